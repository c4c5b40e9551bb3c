import { createHmac, randomBytes } from 'node:crypto'

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com/): a secret is `whsec_` followed by the base64 of its
 * key bytes; a signature is `v1,` followed by the base64 HMAC-SHA256, under those bytes, of `{id}.{timestamp}.{body}`.
 * A receiver's standardwebhooks library verifies it unmodified.
 */

const SECRET_PREFIX = 'whsec_'
// 24 bytes, as the reference libraries generate: within the 24–64 the specification recommends.
const SECRET_BYTES = 24

/** A new signing secret, `whsec_` + base64. */
export function generateSecret (): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64')
}

/** The `v1,` signature of one request under one secret. */
export function sign (secret: string, messageId: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64')
  return `v1,${createHmac('sha256', key).update(`${messageId}.${timestampSeconds}.${body}`).digest('base64')}`
}

/**
 * The headers of one attempt: webhook-id (the same on every attempt), webhook-timestamp (now, in seconds) and
 * webhook-signature, one `v1,` signature per secret separated by spaces (the new secret's first during a rotation's
 * overlap): a receiver holding either secret verifies it.
 */
export function signedHeaders (secrets: string[], messageId: string, body: string, now = new Date()): Record<string, string> {
  const timestamp = Math.floor(now.getTime() / 1000)
  return {
    'content-type': 'application/json',
    'webhook-id': messageId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': secrets.map((secret) => sign(secret, messageId, timestamp, body)).join(' ')
  }
}
