import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { LiveSchema, ReadySchema, type Ready } from '../../schemas/health.js'

// Readiness must answer quickly even when a dependency hangs; a load balancer polls it.
const CHECK_TIMEOUT_MS = 1000

async function check (kind: string, probe: () => Promise<unknown>): Promise<Ready['checks']['postgres']> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([probe(), new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS) })])
    return { status: 'up', kind }
  } catch (error) {
    return { status: 'down', kind, error: (error as Error).message || (error as { code?: string }).code || 'unreachable' }
  } finally {
    clearTimeout(timer)
  }
}

/** Liveness (the process answers) and readiness (PostgreSQL and Redis both answer). */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/health/live', {
    schema: { tags: ['health'], summary: 'The process answers', response: { 200: LiveSchema } }
  }, async () => ({ status: 'ok' as const }))

  app.get('/health/ready', {
    schema: {
      tags: ['health'],
      summary: 'PostgreSQL and Redis both answer',
      description: '503 names the dependency that failed.',
      response: { 200: ReadySchema, 503: ReadySchema }
    }
  }, async (_request, reply) => {
    const [postgres, redis] = await Promise.all([
      check(app.config.databaseUrl === undefined ? 'pglite' : 'postgresql', () => app.sql`select 1`),
      check(app.store.kind, () => app.store.ping())
    ])
    const ready = postgres.status === 'up' && redis.status === 'up'
    return reply.code(ready ? 200 : 503).header('cache-control', 'no-store')
      .send({ status: ready ? 'ok' : 'unavailable', checks: { postgres, redis } })
  })
}

export default health
