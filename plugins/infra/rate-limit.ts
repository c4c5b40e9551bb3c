import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit'
import type { FastifyContextConfig, FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../../src/config.js'

/** Route config of a management API route: RATE_LIMIT_API_PER_MIN per IP, none when it is 0. */
export function managementRouteConfig (config: Config): FastifyContextConfig {
  const max = config.rateLimit.apiPerMinute
  return max === 0 ? {} : { rateLimit: { max, timeWindow: 60_000 } } as FastifyContextConfig
}

/**
 * A limiter of `max` requests a minute per key, as a hook the route places itself in its preHandler array, where
 * its order among the route's other steps is visible. Counters live under `rate:{route}:{key}`, as a route's own do.
 */
export function rateLimitStep (app: FastifyInstance, route: string, max: number, keyGenerator: (request: FastifyRequest) => string): preHandlerAsyncHookHandler {
  return app.rateLimit({ max, timeWindow: 60_000, keyGenerator, route } as RateLimitOptions) as preHandlerAsyncHookHandler
}

type Callback = (error: Error | null, result?: { current: number, ttl: number }) => void

/**
 * @fastify/rate-limit on the shared KeyValueStore (Redis, or the in-process stand-in), so there is one Redis
 * client, not two. Routes opt in with `config: { rateLimit: { max, timeWindow, keyGenerator } }` or place a
 * rateLimitStep among their hooks; counters live
 * under `rate:{route}:{key}`. When Redis fails, requests pass (skipOnError): a rate limiter must not take the
 * service down with it.
 */
export default fp(async (app) => {
  const { store } = app

  class KeyValueRateLimitStore {
    constructor (private readonly prefix = 'rate:') {}

    incr (key: string, callback: Callback, timeWindow: number): void {
      store.hit(this.prefix + key, timeWindow).then(
        (hit) => callback(null, { current: hit.count, ttl: hit.ttlMs }),
        (error: Error) => callback(error)
      )
    }

    // `route` is rateLimitStep's: app.rateLimit() hooks are given no route of their own.
    child (params: { route?: string, routeInfo?: { url?: string } }): KeyValueRateLimitStore {
      return new KeyValueRateLimitStore(`rate:${params.route ?? params.routeInfo?.url ?? 'global'}:`)
    }
  }

  await app.register(rateLimit, {
    global: false,
    store: KeyValueRateLimitStore as never,
    skipOnError: true,
    onExceeded: (request) => { app.metrics.rateLimited.inc({ route: request.routeOptions.url ?? 'unmatched' }) },
    errorResponseBuilder: (_request, context) => Object.assign(new Error(`rate limit exceeded, retry in ${Math.ceil(context.ttl / 1000)} s`), { statusCode: context.statusCode })
  })
}, { name: 'rate-limit', dependencies: ['redis', 'metrics'] })
