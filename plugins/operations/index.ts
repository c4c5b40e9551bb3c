import type { FastifyPluginAsync } from 'fastify'
import health from './health.js'
import metrics from './metrics.js'

/** What operators and orchestrators poll: /health/live, /health/ready and /metrics. */
const operations: FastifyPluginAsync = async (app) => {
  await app.register(health)
  await app.register(metrics)
}

export default operations
