import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import argon2 from 'argon2'

/**
 * argon2id at OWASP's recommended minimum (m = 19 MiB, t = 2, p = 1). Hashes carry their parameters,
 * so raising these later only affects new hashes.
 */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const

/**
 * A client secret: the credential's id (32 hex digits, so a request names the one hash to check), `_`, then
 * 32 random bytes in base64url (256 bits). Uses only A-Z a-z 0-9 _ -, so it survives form-urlencoding untouched.
 */
export function generateClientSecret (credentialId: string): string {
  return `${credentialId.replace(/-/g, '')}_${randomBytes(32).toString('base64url')}`
}

const ID_PREFIXED_SECRET = /^([0-9a-f]{32})_[A-Za-z0-9_-]{43}$/

/** The credential id a generated secret carries, or undefined (a bootstrap secret carries none). */
export function credentialIdOfSecret (secret: string): string | undefined {
  const hex = ID_PREFIXED_SECRET.exec(secret)?.[1]
  if (hex === undefined) return undefined
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** A new client_id: `agt_` and 128 random bits in base64url. */
export function generateClientId (): string {
  return `agt_${randomBytes(16).toString('base64url')}`
}

/** The hashing slots are busy and too many wait already (for this key, or in all): answer 503 and retry later. */
export class HashQueueFull extends Error {
  constructor () {
    super('too many secret verifications are waiting; retry later')
    this.name = 'HashQueueFull'
  }
}

interface Waiter { start: () => void }

/**
 * Runs argon2 computations in a fixed number of slots, fairly between keys (a client_id, for verification): a key
 * holds at most `perKey` slots at once, freed slots go to the waiting keys in turn, and at most `perKeyWaiting`
 * computations of one key, `maxWaiting` in all, may wait. A flood against one client_id then delays that client_id
 * alone: another key's first computation starts in a slot the flood may not take, or next when all are busy.
 */
export class HashSlots {
  #running = 0
  #waitingCount = 0
  readonly #runningByKey = new Map<string, number>()
  // Keys in the order they are served next; a key is in here exactly while it has waiters.
  readonly #queues = new Map<string, Waiter[]>()

  constructor (readonly slots: number, readonly perKey: number, readonly perKeyWaiting: number, readonly maxWaiting: number) {}

  /** Computations running and waiting now (for metrics and tests). */
  get load (): { running: number, waiting: number } {
    return { running: this.#running, waiting: this.#waitingCount }
  }

  /**
   * Runs work in a slot of key's share; throws HashQueueFull at once when it would have to wait and the queue is
   * full, unless `bounded` is false (work an operator asked for, never a stranger's request).
   */
  async run<T> (key: string, work: () => Promise<T>, bounded = true): Promise<T> {
    if (this.#mayStart(key)) this.#take(key)
    else await this.#wait(key, bounded)
    try {
      return await work()
    } finally {
      this.#release(key)
    }
  }

  #mayStart (key: string): boolean {
    return this.#running < this.slots && (this.#runningByKey.get(key) ?? 0) < this.perKey && !this.#queues.has(key)
  }

  #take (key: string): void {
    this.#running += 1
    this.#runningByKey.set(key, (this.#runningByKey.get(key) ?? 0) + 1)
  }

  async #wait (key: string, bounded: boolean): Promise<void> {
    const queue = this.#queues.get(key)
    if (bounded && (this.#waitingCount >= this.maxWaiting || (queue?.length ?? 0) >= this.perKeyWaiting)) throw new HashQueueFull()
    await new Promise<void>((resolve) => {
      const waiter = { start: resolve }
      if (queue === undefined) this.#queues.set(key, [waiter])
      else queue.push(waiter)
      this.#waitingCount += 1
    })
  }

  #release (key: string): void {
    this.#running -= 1
    const left = (this.#runningByKey.get(key) ?? 1) - 1
    if (left === 0) this.#runningByKey.delete(key)
    else this.#runningByKey.set(key, left)
    this.#startWaiters()
  }

  /** Fills free slots from the waiting keys in turn, skipping keys at their share; a served key goes to the back. */
  #startWaiters (): void {
    for (const [key, queue] of this.#queues) {
      if (this.#running >= this.slots) return
      if ((this.#runningByKey.get(key) ?? 0) >= this.perKey) continue
      const waiter = queue.shift() as Waiter
      this.#queues.delete(key)
      if (queue.length > 0) this.#queues.set(key, queue)
      this.#waitingCount -= 1
      this.#take(key)
      waiter.start()
    }
  }
}

/**
 * argon2 shares libuv's thread pool (4 threads) with token signing: at most one computation per core, and one
 * client_id takes at most half of them, so a flood against one client_id leaves a slot for everyone else.
 */
const SLOTS = Math.max(2, availableParallelism())
export const hashSlots = new HashSlots(SLOTS, Math.max(1, Math.floor(SLOTS / 2)), 8 * SLOTS, 64 * SLOTS)

// Creating and checking stored hashes (management API, bootstrap) share one key: operators' work waits its turn,
// never refused, and takes one share like any client_id.
const HASHING_KEY = '\0hash'

/** The argon2id hash stored for a secret (on libuv's thread pool, off the event loop). */
export async function hashSecret (secret: string): Promise<string> {
  return await hashSlots.run(HASHING_KEY, async () => await argon2.hash(secret, ARGON2_OPTIONS), false)
}

/**
 * Whether the secret matches the stored hash; false for a malformed hash rather than an error. `fairnessKey` (the
 * client_id a request names) decides whose share of the hashing slots it takes; with one, throws HashQueueFull
 * when that share's queue is full. Without, it is an operator's check, which waits its turn.
 */
export async function verifySecret (hash: string, secret: string, fairnessKey?: string): Promise<boolean> {
  return await hashSlots.run(fairnessKey ?? HASHING_KEY, async () => {
    try {
      return await argon2.verify(hash, secret)
    } catch {
      return false
    }
  }, fairnessKey !== undefined)
}

let dummyHash: Promise<string> | undefined

/**
 * An argon2id hash of a random secret nobody knows, with the parameters of every stored hash, computed once: a
 * request naming no credential verifies against it, so it costs what a wrong secret costs.
 */
export async function unmatchableHash (): Promise<string> {
  dummyHash ??= argon2.hash(randomBytes(32).toString('base64url'), ARGON2_OPTIONS)
  return await dummyHash
}
