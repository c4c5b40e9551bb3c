import fp from 'fastify-plugin'
import { MemoryStore, RedisStore, type KeyValueStore } from '../../src/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Redis, or the in-process stand-in without REDIS_URL: keys with TTL, counters, rate-limit windows. */
    store: KeyValueStore
  }
}

// A Redis that is down reports an error on every reconnect attempt; one log line per interval is enough.
const ERROR_LOG_INTERVAL_MS = 30_000

export default fp(async (app) => {
  const { config } = app
  let store: KeyValueStore
  if (config.redisUrl === undefined) {
    store = new MemoryStore()
    app.log.warn('REDIS_URL not set: using the in-process store; it serves a single instance only')
  } else {
    let lastLogged = 0
    const redis = new RedisStore(config.redisUrl, (error) => {
      if (Date.now() - lastLogged < ERROR_LOG_INTERVAL_MS) return
      lastLogged = Date.now()
      app.log.warn({ err: { message: error.message } }, 'redis error; serving from PostgreSQL until it answers again')
    })
    if (!await redis.connect()) app.log.warn('redis is not reachable at start; the server keeps trying in the background')
    store = redis
  }
  app.decorate('store', store)
  app.addHook('onClose', async () => { await store.close() })
}, { name: 'redis', dependencies: ['config'] })
