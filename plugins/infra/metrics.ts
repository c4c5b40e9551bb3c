import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** The Prometheus metrics every capability reports into; served at /metrics. */
export interface Metrics {
  registry: Registry
  httpRequestDuration: Histogram<'method' | 'route' | 'status_code'>
  tokensIssued: Counter<'grant_type'>
  authFailures: Counter<'endpoint' | 'reason'>
  secretVerifications: Counter
  revocations: Counter<'kind'>
  rateLimited: Counter<'route'>
  auditBatchSize: Histogram
  dependencyUp: Gauge<'dependency'>
  webhookAttempts: Counter<'outcome'>
  webhookDeliveries: Counter<'outcome'>
  webhookLag: Histogram
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/** Builds a fresh registry (one per app, so tests and replicas in one process do not share counters). */
export function createMetrics (): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'agentidp_' })
  return {
    registry,
    httpRequestDuration: new Histogram({
      name: 'agentidp_http_request_duration_seconds',
      help: 'HTTP requests by route and status, with latency',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    }),
    tokensIssued: new Counter({ name: 'agentidp_tokens_issued_total', help: 'Access tokens issued', labelNames: ['grant_type'], registers: [registry] }),
    authFailures: new Counter({ name: 'agentidp_auth_failures_total', help: 'Failed client or bearer authentications', labelNames: ['endpoint', 'reason'], registers: [registry] }),
    secretVerifications: new Counter({ name: 'agentidp_client_secret_verifications_total', help: 'argon2id verifications of presented client secrets (dummy ones for unknown clients included)', registers: [registry] }),
    revocations: new Counter({ name: 'agentidp_revocations_total', help: 'Revocations: tokens, credentials, agent suspensions and decommissions', labelNames: ['kind'], registers: [registry] }),
    rateLimited: new Counter({ name: 'agentidp_rate_limited_total', help: 'Requests refused by a rate limit', labelNames: ['route'], registers: [registry] }),
    auditBatchSize: new Histogram({ name: 'agentidp_audit_batch_size', help: 'Audit events committed per group-commit batch', buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500], registers: [registry] }),
    dependencyUp: new Gauge({ name: 'agentidp_dependency_up', help: '1 when the dependency answered its last probe (probed on each scrape)', labelNames: ['dependency'], registers: [registry] }),
    webhookAttempts: new Counter({ name: 'agentidp_webhook_attempts_total', help: 'Webhook delivery attempts by outcome (success, failure, retry_after, gone, refused, timeout)', labelNames: ['outcome'], registers: [registry] }),
    webhookDeliveries: new Counter({ name: 'agentidp_webhook_deliveries_total', help: 'Webhook deliveries finished, by outcome (succeeded, failed)', labelNames: ['outcome'], registers: [registry] }),
    webhookLag: new Histogram({ name: 'agentidp_webhook_lag_seconds', help: 'Time from an audit event to the first attempt to deliver it', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [registry] })
  }
}

/** Decorates `app.metrics` and times every request. */
export default fp(async (app) => {
  const metrics = createMetrics()
  app.decorate('metrics', metrics)
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000
    )
  })
}, { name: 'metrics' })
