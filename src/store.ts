import { createClient, createCluster, createSentinel, ErrorReply } from 'redis'
import type { RedisNodeAddress } from './config.js'
import { DEFAULT_ORG_ID } from './database.js'

/**
 * The part of a key that names its organization: '' for the default (its keys are what they were before
 * organizations), `org:{id}:` for every other, so two organizations' counters and limits never meet. Keys named by
 * an id that is unique everywhere (a jti, an agent or credential id) need none.
 */
export function organizationSegment (orgId: string): string {
  return orgId === DEFAULT_ORG_ID ? '' : `org:${orgId}:`
}

/** A fixed-window counter's state after one hit. */
export interface WindowHit {
  count: number
  /** Milliseconds until the window resets. */
  ttlMs: number
}

/**
 * The small key-value interface the capabilities use: Redis in production, an in-process stand-in on a laptop.
 * Keys carry their own prefix (`rate:`, `revoked:`, `monthly:`), so both implementations store them verbatim.
 */
export interface KeyValueStore {
  readonly kind: 'redis' | 'memory'
  /** Resolves when the store answers; rejects when it does not. */
  ping(): Promise<void>
  get(key: string): Promise<string | null>
  mget(keys: string[]): Promise<Array<string | null>>
  /** Sets the value, expiring after ttlMs when given. */
  set(key: string, value: string, ttlMs?: number): Promise<void>
  /** Sets many values in one round trip, each with its own ttl. */
  setMany(entries: Array<{ key: string, value: string, ttlMs?: number }>): Promise<void>
  del(key: string): Promise<void>
  /**
   * Sets the value, expiring after ttlMs, only if the key does not exist: true when this call set it. Atomic, so of
   * two concurrent calls for one key exactly one is true (single-use marks: DPoP proof jtis).
   */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>
  /**
   * Sets the value (no expiry) and deletes fenceKey, only if fenceKey still exists: true when it did. Atomic, so a
   * flush or an empty restart of the store since the fence was set keeps the value from being set. In a Cluster both
   * keys must share a slot (a hash tag).
   */
  setIfFenced(fenceKey: string, key: string, value: string): Promise<boolean>
  /**
   * The store's maxmemory-policy ('noeviction' for the in-process store, which never evicts). Rejects with
   * StoreRefused when the store answers but refuses the question (CONFIG not allowed), with another error when it
   * does not answer.
   */
  maxmemoryPolicy(): Promise<string>
  /** Calls listener each time the store becomes ready after a connection was made or lost (never for the in-process store). */
  onReconnect(listener: () => void): void
  /**
   * Calls listener when another server took over keys the store held (a Sentinel failover, a Cluster node that came
   * back): writes acknowledged by the one before may be lost, since Redis replicates asynchronously.
   */
  onTopologyChange(listener: () => void): void
  /** Increments by one; sets the expiry when the counter is created. Returns the new count. */
  incr(key: string, ttlMs?: number): Promise<number>
  /** One hit on a fixed-window counter (rate limits). */
  hit(key: string, windowMs: number): Promise<WindowHit>
  /** Takes one hit back from a counter that still exists: never creates one, never goes below zero. */
  refund(key: string): Promise<void>
  close(): Promise<void>
}

/** The store answered, with a refusal (a command renamed away or denied by an ACL). */
export class StoreRefused extends Error {
  override name = 'StoreRefused'
}

/** How long a Redis command may take before the caller treats Redis as down. */
const REDIS_COMMAND_TIMEOUT_MS = 500

// One round trip: increment, start the window on the first hit, report the count and what is left of the window.
const HIT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return { count, ttl }`

// A bare DECR would create a counter without expiry once the window ended.
const REFUND_SCRIPT = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0`

const SET_IF_FENCED_SCRIPT = `
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1`

const INCR_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 and tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count`

/**
 * Rejects after ms, so a Redis that hangs never holds a request. One plain timer a command: this is on the path of
 * every OAuth request, several times.
 */
async function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  return await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${what} timed out after ${ms} ms`)) }, ms)
    promise.then((value) => { clearTimeout(timer); resolve(value) }, (error: unknown) => { clearTimeout(timer); reject(error) })
  })
}

/** Where Redis is: one server (or a proxy) by URL, a Sentinel-managed primary, or a Cluster. */
export type RedisTarget =
  | { url: string }
  | { sentinel: { name: string, nodes: RedisNodeAddress[] } }
  | { cluster: RedisNodeAddress[] }

/** What RedisStore uses of node-redis's three clients (createClient, createSentinel, createCluster). */
interface RedisCommands {
  readonly isReady: boolean
  connect(): Promise<unknown>
  close(): Promise<unknown>
  destroy(): unknown
  on(event: string, listener: (...args: any[]) => void): unknown
  ping(): Promise<unknown>
  get(key: string): Promise<string | null>
  mGet(keys: string[]): Promise<Array<string | null>>
  set(key: string, value: string, options?: { PX: number } | { condition: 'NX', expiration: { type: 'PX', value: number } }): Promise<unknown>
  del(key: string): Promise<unknown>
  eval(script: string, options: { keys: string[], arguments: string[] }): Promise<unknown>
  configGet(parameter: string): Promise<unknown>
  multi(): RedisMulti
}

interface RedisMulti {
  set(key: string, value: string, options?: { PX: number }): RedisMulti
  mGet(keys: string[]): RedisMulti
  /** The Sentinel client's form (its first argument: whether a replica may run it). */
  addCommand(isReadonly: boolean, args: string[]): RedisMulti
  exec(): Promise<unknown[]>
  execAsPipeline(): Promise<unknown>
}

// Fail commands at once while disconnected instead of queueing them: callers fall back to PostgreSQL.
const NODE_OPTIONS = {
  disableOfflineQueue: true,
  socket: {
    connectTimeout: 2000,
    reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2000)
  }
}
// node-redis's own command timeout (5 s by default, an AbortSignal.timeout a command) only covers the wait before a
// command is written; withTimeout covers the whole round trip, so the client's is turned off.
const COMMAND_OPTIONS = { timeout: 0 }

/**
 * KeyValueStore on Redis (node-redis): one server, a Sentinel-managed primary or a Cluster, each through node-redis's
 * own client. Commands fail fast while disconnected; the client reconnects (and follows failovers) by itself.
 */
export class RedisStore implements KeyValueStore {
  readonly kind = 'redis' as const
  readonly #client: RedisCommands
  readonly #cluster: ReturnType<typeof createCluster> | undefined
  readonly #sentinel: boolean
  readonly #topologyListeners: Array<() => void> = []
  #closed = false

  constructor (target: RedisTarget, onError: (error: Error) => void) {
    this.#sentinel = 'sentinel' in target
    if ('url' in target) {
      this.#client = createClient({ url: target.url, commandOptions: COMMAND_OPTIONS, ...NODE_OPTIONS }) as unknown as RedisCommands
    } else if ('sentinel' in target) {
      const sentinel = createSentinel({
        name: target.sentinel.name,
        sentinelRootNodes: target.sentinel.nodes,
        nodeClientOptions: NODE_OPTIONS,
        sentinelClientOptions: NODE_OPTIONS,
        commandOptions: COMMAND_OPTIONS,
        // Every command goes to the primary: a replica may lag behind a revocation just written.
        replicaPoolSize: 0
      })
      sentinel.on('topology-change', (event: { type: string }) => { if (event.type === 'MASTER_CHANGE') this.#topologyChanged() })
      this.#client = sentinel as unknown as RedisCommands
    } else {
      this.#cluster = createCluster({
        rootNodes: target.cluster.map((node) => ({ socket: node })),
        defaults: NODE_OPTIONS,
        commandOptions: COMMAND_OPTIONS
      })
      // A node that comes back may have come back empty (no persistence), or be a promoted replica.
      const lost = new Set<string>()
      this.#cluster.on('node-disconnect', (node: { host: string, port: number }) => { lost.add(`${node.host}:${node.port}`) })
      this.#cluster.on('node-ready', (node: { host: string, port: number }) => {
        if (lost.delete(`${node.host}:${node.port}`)) this.#topologyChanged()
      })
      this.#client = this.#cluster as unknown as RedisCommands
    }
    // Sentinel's observer reports some errors as bare strings.
    this.#client.on('error', (error: unknown) => { onError(error instanceof Error ? error : new Error(String(error))) })
  }

  #topologyChanged (): void {
    for (const listener of this.#topologyListeners) listener()
  }

  /** Starts connecting; resolves once connected or after waitMs, whichever comes first. Never rejects. */
  async connect (waitMs = 2000): Promise<boolean> {
    const connecting = this.#client.connect().then(() => true, () => false)
    return await Promise.race([connecting, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), waitMs).unref())])
  }

  #run<T> (command: Promise<T>, what: string): Promise<T> {
    return withTimeout(command, REDIS_COMMAND_TIMEOUT_MS, `redis ${what}`)
  }

  async ping (): Promise<void> {
    await this.#run(this.#client.ping(), 'PING')
  }

  async get (key: string): Promise<string | null> {
    return await this.#run(this.#client.get(key), 'GET')
  }

  async mget (keys: string[]): Promise<Array<string | null>> {
    if (keys.length === 0) return []
    // In a Cluster the keys lie in different slots: node-redis splits the MGET by slot and sends the parts to
    // their masters in parallel (its multi_shard request policy), so no hash tag pins every revocation key to one node.
    if (this.#sentinel) {
      // Until node-redis learns of a failover it may still talk to the old primary, now a replica resynced from the
      // new one: it would answer from a copy that lacks what the failover lost. GETEX (a write command that changes
      // nothing without options) makes the transaction fail with READONLY there instead.
      const [, values] = await this.#run(this.#client.multi().addCommand(false, ['GETEX', keys[0] as string]).mGet(keys).exec(), 'MGET')
      return values as Array<string | null>
    }
    return await this.#run(this.#client.mGet(keys), 'MGET')
  }

  async set (key: string, value: string, ttlMs?: number): Promise<void> {
    const options = ttlMs === undefined ? undefined : { PX: Math.max(1, Math.ceil(ttlMs)) }
    await this.#run(this.#client.set(key, value, options), 'SET')
  }

  async setMany (entries: Array<{ key: string, value: string, ttlMs?: number }>): Promise<void> {
    if (entries.length === 0) return
    // A pipeline is queued while disconnected despite disableOfflineQueue, and a queued command holds close():
    // fail it at once like every other command.
    if (!this.#client.isReady) throw new Error('The client is offline')
    if (this.#cluster !== undefined) {
      // A Cluster pipeline is bound to the slot of its first key: one SET a key, in parallel.
      await this.#run(Promise.all(entries.map(async ({ key, value, ttlMs }) => await this.#client.set(key, value, ttlMs === undefined ? undefined : { PX: Math.max(1, Math.ceil(ttlMs)) }))), 'SET')
      return
    }
    const multi = this.#client.multi()
    for (const { key, value, ttlMs } of entries) {
      multi.set(key, value, ttlMs === undefined ? undefined : { PX: Math.max(1, Math.ceil(ttlMs)) })
    }
    await this.#run(multi.execAsPipeline(), 'pipeline SET')
  }

  async del (key: string): Promise<void> {
    await this.#run(this.#client.del(key), 'DEL')
  }

  async setIfAbsent (key: string, value: string, ttlMs: number): Promise<boolean> {
    const reply = await this.#run(this.#client.set(key, value, { condition: 'NX', expiration: { type: 'PX', value: Math.max(1, Math.ceil(ttlMs)) } }), 'SET NX')
    return reply === 'OK'
  }

  async setIfFenced (fenceKey: string, key: string, value: string): Promise<boolean> {
    const reply = await this.#run(this.#client.eval(SET_IF_FENCED_SCRIPT, { keys: [fenceKey, key], arguments: [value] }), 'fenced SET')
    return Number(reply) === 1
  }

  async maxmemoryPolicy (): Promise<string> {
    if (this.#cluster === undefined) return await this.#policyOf(this.#client)
    // Each master keeps its own slots: the Cluster keeps every key only if every master does.
    const cluster = this.#cluster
    const policies = await Promise.all(cluster.masters.map(async (master) => await this.#policyOf(await cluster.nodeClient(master) as unknown as RedisCommands)))
    if (policies.length === 0) throw new Error('the Redis Cluster has no master yet')
    return policies.find((policy) => policy !== 'noeviction') ?? 'noeviction'
  }

  async #policyOf (client: RedisCommands): Promise<string> {
    let reply: Record<string, unknown>
    try {
      reply = await this.#run(client.configGet('maxmemory-policy'), 'CONFIG GET') as Record<string, unknown>
    } catch (error) {
      if (error instanceof ErrorReply) throw new StoreRefused(error.message)
      throw error
    }
    const policy = reply['maxmemory-policy']
    // A proxy may answer CONFIG GET with nothing: that is no answer either.
    if (typeof policy !== 'string') throw new StoreRefused('CONFIG GET maxmemory-policy returned no value')
    return policy
  }

  onReconnect (listener: () => void): void {
    this.#client.on('ready', listener)
    // A new primary or node answers now: its maxmemory-policy is read again too.
    this.#topologyListeners.push(listener)
  }

  onTopologyChange (listener: () => void): void {
    this.#topologyListeners.push(listener)
  }

  async incr (key: string, ttlMs = 0): Promise<number> {
    const count = await this.#run(this.#client.eval(INCR_SCRIPT, { keys: [key], arguments: [String(Math.ceil(ttlMs))] }), 'INCR')
    return Number(count)
  }

  async hit (key: string, windowMs: number): Promise<WindowHit> {
    const reply = await this.#run(this.#client.eval(HIT_SCRIPT, { keys: [key], arguments: [String(windowMs)] }), 'rate hit') as number[]
    return { count: Number(reply[0]), ttlMs: Number(reply[1]) }
  }

  async refund (key: string): Promise<void> {
    await this.#run(this.#client.eval(REFUND_SCRIPT, { keys: [key], arguments: [] }), 'refund')
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      // close() waits for commands in flight; a Redis that stopped answering must not hold shutdown.
      await withTimeout(this.#client.close(), REDIS_COMMAND_TIMEOUT_MS * 2, 'redis close')
    } catch {
      this.#client.destroy()
    }
  }
}

interface MemoryEntry {
  value: string
  /** Epoch ms after which the entry is gone; Infinity for none. */
  expiresAt: number
}

/** KeyValueStore in this process's memory: the embedded default's stand-in for Redis (one instance only). */
export class MemoryStore implements KeyValueStore {
  readonly kind = 'memory' as const
  readonly #entries = new Map<string, MemoryEntry>()
  readonly #sweeper: NodeJS.Timeout

  constructor () {
    // Expired entries are dropped on read; the sweep bounds memory for keys that are never read again.
    this.#sweeper = setInterval(() => this.#sweep(), 60_000).unref()
  }

  #sweep (): void {
    const now = Date.now()
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key)
  }

  #live (key: string): MemoryEntry | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }

  async ping (): Promise<void> {}

  async get (key: string): Promise<string | null> {
    return this.#live(key)?.value ?? null
  }

  async mget (keys: string[]): Promise<Array<string | null>> {
    return keys.map((key) => this.#live(key)?.value ?? null)
  }

  async set (key: string, value: string, ttlMs?: number): Promise<void> {
    this.#entries.set(key, { value, expiresAt: ttlMs === undefined ? Infinity : Date.now() + ttlMs })
  }

  async setMany (entries: Array<{ key: string, value: string, ttlMs?: number }>): Promise<void> {
    for (const { key, value, ttlMs } of entries) await this.set(key, value, ttlMs)
  }

  async del (key: string): Promise<void> {
    this.#entries.delete(key)
  }

  async setIfAbsent (key: string, value: string, ttlMs: number): Promise<boolean> {
    if (this.#live(key) !== undefined) return false
    this.#entries.set(key, { value, expiresAt: Date.now() + ttlMs })
    return true
  }

  async setIfFenced (fenceKey: string, key: string, value: string): Promise<boolean> {
    if (this.#live(fenceKey) === undefined) return false
    this.#entries.delete(fenceKey)
    this.#entries.set(key, { value, expiresAt: Infinity })
    return true
  }

  async maxmemoryPolicy (): Promise<string> {
    return 'noeviction'
  }

  onReconnect (): void {}

  onTopologyChange (): void {}

  async incr (key: string, ttlMs = 0): Promise<number> {
    const entry = this.#live(key)
    if (entry === undefined) {
      this.#entries.set(key, { value: '1', expiresAt: ttlMs > 0 ? Date.now() + ttlMs : Infinity })
      return 1
    }
    entry.value = String(Number(entry.value) + 1)
    return Number(entry.value)
  }

  async hit (key: string, windowMs: number): Promise<WindowHit> {
    const count = await this.incr(key, windowMs)
    const entry = this.#entries.get(key) as MemoryEntry
    return { count, ttlMs: Math.max(0, entry.expiresAt - Date.now()) }
  }

  async refund (key: string): Promise<void> {
    const entry = this.#live(key)
    if (entry !== undefined && Number(entry.value) > 0) entry.value = String(Number(entry.value) - 1)
  }

  async close (): Promise<void> {
    clearInterval(this.#sweeper)
    this.#entries.clear()
  }
}
