import { createPublicKey, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint } from 'jose'
import { badRequest } from '../../../src/errors.js'
import type { PublicJwk } from '../../../schemas/credentials.js'

/** The asymmetric algorithms a client assertion may be signed with (never none, never HS*), as discovery lists them. */
export const ASSERTION_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const

const MIN_RSA_BITS = 2048
// Members of a private JWK (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2) and of a symmetric one (§6.4).
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** The algorithms a key of this type and curve can verify. */
export function algorithmsOf (jwk: PublicJwk): string[] {
  const byKey = jwk.kty === 'RSA' ? ['RS256', 'PS256'] : jwk.kty === 'EC' ? (jwk.crv === 'P-256' ? ['ES256'] : ['ES384']) : ['EdDSA']
  return jwk.alg === undefined ? byKey : byKey.filter((alg) => alg === jwk.alg)
}

const invalid = (message: string): Error => badRequest(`jwk: ${message}`, [{ location: 'body/jwk', message }])

const text = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= 1024

/**
 * The public key a registration presents, reduced to its public members (kid and alg kept), with its RFC 7638
 * thumbprint. A private or symmetric JWK, a key type or curve not accepted, an RSA modulus under 2048 bits or
 * an alg its key cannot verify is a 400 naming body/jwk.
 */
export async function publicJwkOf (given: Record<string, unknown>): Promise<{ jwk: PublicJwk, thumbprint: string, key: KeyObject }> {
  if (PRIVATE_MEMBERS.some((member) => member in given)) throw invalid('a private or symmetric key is refused: register the public key only')
  const { kty, crv, kid, alg } = given
  let jwk: PublicJwk
  if (kty === 'RSA' && text(given.n) && text(given.e)) {
    jwk = { kty, n: given.n, e: given.e }
  } else if (kty === 'EC' && (crv === 'P-256' || crv === 'P-384') && text(given.x) && text(given.y)) {
    jwk = { kty, crv, x: given.x, y: given.y }
  } else if (kty === 'OKP' && crv === 'Ed25519' && text(given.x)) {
    jwk = { kty, crv, x: given.x }
  } else {
    throw invalid('must be a public RSA key (n, e), EC P-256 or P-384 key (x, y) or OKP Ed25519 key (x)')
  }
  if (kid !== undefined) {
    if (!text(kid)) throw invalid('kid must be a non-empty string')
    jwk.kid = kid
  }
  if (alg !== undefined) {
    if (typeof alg !== 'string') throw invalid('alg must be a string')
    jwk.alg = alg
    if (algorithmsOf(jwk).length === 0) throw invalid(`alg ${alg} cannot be used with this key (accepted: ${ASSERTION_ALGORITHMS.join(', ')})`)
  }
  let key: KeyObject
  try {
    key = createPublicKey({ key: { ...jwk }, format: 'jwk' })
  } catch {
    throw invalid('is not a valid public key')
  }
  if (jwk.kty === 'RSA' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) throw invalid(`an RSA key must have at least ${MIN_RSA_BITS} bits`)
  return { jwk, thumbprint: await calculateJwkThumbprint(jwk, 'sha256'), key }
}

/** The key object of a stored public JWK. */
export function keyOfJwk (jwk: PublicJwk): KeyObject {
  return createPublicKey({ key: { ...jwk }, format: 'jwk' })
}
