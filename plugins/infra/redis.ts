import fp from 'fastify-plugin'
import { ConfigError } from '../../src/config.js'
import { MemoryStore, RedisStore, StoreRefused, type KeyValueStore, type RedisTarget } from '../../src/store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Redis, or the in-process stand-in without REDIS_URL: keys with TTL, counters, rate-limit windows. */
    store: KeyValueStore
    /**
     * Whether the store is known to keep every key until it expires or is deleted (maxmemory-policy noeviction, or
     * the in-process store). Revocation answers come from the store only while this is true: under any other policy
     * Redis may evict a `revoked:` key while the completeness marker survives, and a revoked token comes back.
     */
    storeKeepsKeys(): boolean
  }
}

/** The only maxmemory-policy under which Redis never drops a key before it expires: volatile-* and allkeys-* evict. */
export const SAFE_MAXMEMORY_POLICY = 'noeviction'
// CONFIG SET can change the policy without a reconnect: it is read again this often.
const POLICY_CHECK_INTERVAL_MS = 60_000

// A Redis that is down reports an error on every reconnect attempt; one log line per interval is enough.
const ERROR_LOG_INTERVAL_MS = 30_000

export default fp(async (app) => {
  const { config } = app
  let store: KeyValueStore
  const target: RedisTarget | undefined = config.redisUrl !== undefined
    ? { url: config.redisUrl }
    : config.redisSentinel !== undefined
      ? { sentinel: config.redisSentinel }
      : config.redisClusterNodes !== undefined ? { cluster: config.redisClusterNodes } : undefined
  if (target === undefined) {
    store = new MemoryStore()
    app.log.warn('REDIS_URL not set: using the in-process store; it serves a single instance only')
  } else {
    let lastLogged = 0
    const redis = new RedisStore(target, (error) => {
      if (Date.now() - lastLogged < ERROR_LOG_INTERVAL_MS) return
      lastLogged = Date.now()
      app.log.warn({ err: { message: error.message } }, 'redis error; serving from PostgreSQL until it answers again')
    })
    if (!await redis.connect()) app.log.warn('redis is not reachable at start; the server keeps trying in the background')
    store = redis
  }

  let keepsKeys = store.kind === 'memory'
  /**
   * Reads the maxmemory-policy (CONFIG GET; where it is refused, REDIS_MAXMEMORY_POLICY). Until it is known to be
   * noeviction the store is not trusted with revocations. At start in production an unsafe policy refuses to start.
   */
  async function checkPolicy (when: 'start' | 'reconnect' | 'interval'): Promise<void> {
    const wasSafe = keepsKeys
    let policy: string | undefined
    let source = 'CONFIG GET'
    try {
      policy = await store.maxmemoryPolicy()
    } catch (error) {
      if (!(error instanceof StoreRefused)) {
        // No answer: nothing is known; the check runs again when the connection is back.
        keepsKeys = false
        return
      }
      policy = config.redisMaxmemoryPolicy
      source = 'REDIS_MAXMEMORY_POLICY'
    }
    keepsKeys = policy === SAFE_MAXMEMORY_POLICY
    // Said at start and on each reconnect; the periodic check speaks only when the policy changed under it.
    if (keepsKeys || (when === 'interval' && !wasSafe)) return
    const problem = policy === undefined
      ? 'cannot be read (CONFIG GET is refused) and REDIS_MAXMEMORY_POLICY is not set: set maxmemory-policy noeviction on Redis, then REDIS_MAXMEMORY_POLICY=noeviction'
      : `is ${policy} (${source}), which may evict revoked: keys and bring revoked tokens back: set maxmemory-policy noeviction on Redis`
    if (when === 'start' && config.nodeEnv === 'production') throw new ConfigError('Redis maxmemory-policy', problem)
    app.log.error(`Redis maxmemory-policy ${problem}; revocations are answered from PostgreSQL`)
  }

  if (store instanceof RedisStore) {
    try {
      await checkPolicy('start')
    } catch (error) {
      await store.close()
      throw error
    }
    store.onReconnect(() => { void checkPolicy('reconnect') })
    const policyTimer = setInterval(() => { void checkPolicy('interval') }, POLICY_CHECK_INTERVAL_MS)
    policyTimer.unref()
    app.addHook('onClose', async () => { clearInterval(policyTimer) })
  }
  app.decorate('store', store)
  app.decorate('storeKeepsKeys', () => keepsKeys)
  app.addHook('onClose', async () => { await store.close() })
}, { name: 'redis', dependencies: ['config'] })
