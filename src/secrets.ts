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

/**
 * At most this many argon2 computations at once (one core's worth on two): argon2 shares libuv's thread pool
 * with token signing, and a burst of first-time clients must not starve the event loop or the signer.
 */
const MAX_CONCURRENT_HASHES = Math.max(1, availableParallelism() - 1)
let running = 0
const waiting: Array<() => void> = []

async function limited<T> (work: () => Promise<T>): Promise<T> {
  // A finishing computation hands its slot straight to the next waiter, so the limit holds exactly.
  if (running >= MAX_CONCURRENT_HASHES) await new Promise<void>((resolve) => waiting.push(resolve))
  else running += 1
  try {
    return await work()
  } finally {
    const next = waiting.shift()
    if (next === undefined) running -= 1
    else next()
  }
}

/** The argon2id hash stored for a secret (on libuv's thread pool, off the event loop). */
export async function hashSecret (secret: string): Promise<string> {
  return await limited(async () => await argon2.hash(secret, ARGON2_OPTIONS))
}

/** Whether the secret matches the stored hash; false for a malformed hash rather than an error. */
export async function verifySecret (hash: string, secret: string): Promise<boolean> {
  return await limited(async () => {
    try {
      return await argon2.verify(hash, secret)
    } catch {
      return false
    }
  })
}
