import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminScope } from '../../src/scopes.js'
import { problemResponses } from '../../schemas/common.js'

// Probes on scrape must not hold the scrape when a dependency hangs.
const PROBE_TIMEOUT_MS = 500

async function probe (check: () => Promise<unknown>): Promise<number> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([check(), new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout')), PROBE_TIMEOUT_MS) })])
    return 1
  } catch {
    return 0
  } finally {
    clearTimeout(timer)
  }
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/**
 * GET /metrics in Prometheus text format. Public when METRICS_PUBLIC is true (the default outside production);
 * otherwise for `Authorization: Bearer <METRICS_TOKEN>` when one is set, or an access token with metrics:read.
 */
const metricsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { metrics, config } = app
  const expected = config.metricsToken === undefined ? undefined : digest(`Bearer ${config.metricsToken}`)
  const requireMetricsRead = app.requireScopes(AdminScope.MetricsRead)

  app.get('/metrics', {
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics',
      description: 'Text exposition format. Unless METRICS_PUBLIC is true (the default outside production), it needs `Authorization: Bearer <METRICS_TOKEN>` or a Bearer access token with the scope metrics:read.',
      response: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: Type.String() } } }, ...problemResponses(400, 401, 403, 503) }
    },
    preValidation: config.metricsPublic
      ? []
      : async function requireMetricsAccess (request, reply) {
        if (expected !== undefined && timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) return
        await requireMetricsRead.call(this, request, reply)
      }
  }, async (_request, reply) => {
    const [postgres, redis] = await Promise.all([probe(() => app.sql`select 1`), probe(() => app.store.ping())])
    metrics.dependencyUp.set({ dependency: 'postgres' }, postgres)
    metrics.dependencyUp.set({ dependency: 'redis' }, redis)
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}

export default metricsRoutes
