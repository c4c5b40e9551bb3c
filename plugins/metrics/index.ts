import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { ProblemError } from '../../src/errors.js'
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

/** GET /metrics in Prometheus text format; with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`. */
const metricsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { metrics, config } = app
  const expected = config.metricsToken === undefined ? undefined : digest(`Bearer ${config.metricsToken}`)

  app.get('/metrics', {
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics',
      description: 'Text exposition format. Protected by `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.',
      response: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: Type.String() } } }, ...problemResponses(401) }
    }
  }, async (request, reply) => {
    if (expected !== undefined && !timingSafeEqual(digest(request.headers.authorization ?? ''), expected)) {
      throw new ProblemError(401, 'Unauthorized', 'metrics need Authorization: Bearer <METRICS_TOKEN>', { 'www-authenticate': 'Bearer realm="agentidp-metrics"' })
    }
    const [postgres, redis] = await Promise.all([probe(() => app.sql`select 1`), probe(() => app.store.ping())])
    metrics.dependencyUp.set({ dependency: 'postgres' }, postgres)
    metrics.dependencyUp.set({ dependency: 'redis' }, redis)
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}

export default metricsRoutes
