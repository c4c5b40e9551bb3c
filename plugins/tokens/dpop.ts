import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { calculateJwkThumbprint, EmbeddedJWK, errors as joseErrors, jwtVerify, type JWK } from 'jose'
import { InvalidDpopProof, UseDpopNonce } from '../../src/errors.js'
import { ExpiringCache } from '../../src/expiring-cache.js'
import { headerCount } from './headers.js'
import { dpopProofKey } from './dpop-keys.js'
import type { IssuerContext } from './issuer-context.js'

/**
 * The JWS algorithms a DPoP proof may be signed with (RFC 9449 §5.1 dpop_signing_alg_values_supported): asymmetric
 * only, never none or HS*. Ed25519 is RFC 9864's fully-specified name of EdDSA over Ed25519, which oauth4webapi uses.
 */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'Ed25519', 'EdDSA', 'PS256', 'RS256'] as const

/** A DPoP proof that passed every check of RFC 9449 §4.3: the key it binds to and its single-use id. */
export interface DpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key: the cnf.jkt of a token bound to it (§6.1). */
  jkt: string
  jti: string
  /**
   * Under DPOP_NONCE=required, the current nonce when the proof carried an older one: the answer sends it as
   * DPoP-Nonce (RFC 9449 §8.2), so a client keeps a fresh nonce without a use_dpop_nonce round trip.
   */
  nextNonce?: string
}

/** What the request a proof is checked for must match: the URL of the endpoint and, at a resource, the token. */
export interface ProofExpectation {
  /** The absolute URL of the endpoint, built from the issuer context (never from Host), without query or fragment. */
  htu: string
  /** The access token presented with the proof (resource requests): its SHA-256 must be the proof's ath (§4.2). */
  accessToken?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Checks the request's DPoP header (RFC 9449 §4.3), if it has one: null without one; the proof's key and jti
     * when it passes, its jti then spent; InvalidDpopProof or UseDpopNonce (OAuth errors, 400) when it does not.
     */
    verifyDpopProof(request: FastifyRequest, expected: ProofExpectation): Promise<DpopProof | null>
  }
  interface FastifyRequest {
    /** The DPoP proof the token endpoint verified for this request; null without one. */
    dpopProof: DpopProof | null
  }
}

// A proof is a few hundred bytes (an RSA key makes it about 1.5 kB); anything far larger is refused unparsed.
const MAX_PROOF_LENGTH = 8192
const MAX_JTI_LENGTH = 256
/** How old a proof may be (its iat), and how far ahead of this server's clock it may claim to be made. */
export const PROOF_MAX_AGE_S = 300
export const PROOF_MAX_AHEAD_S = 60
// A spent jti is remembered as long as a proof carrying it could pass the iat check, with a margin for replicas' clocks.
const SPENT_JTI_TTL_MS = (PROOF_MAX_AGE_S + PROOF_MAX_AHEAD_S + 5) * 1000
// Stateless nonces (§8): an HMAC of a time step, so every replica sharing the signing key makes and accepts the same.
const NONCE_STEP_MS = 60_000
// A nonce is accepted during the step it was made in and the next NONCE_STEPS_ACCEPTED - 1, and one step ahead (a
// replica whose clock is ahead made it).
const NONCE_STEPS_ACCEPTED = 3
const SPENT_JTIS_IN_MEMORY = 100_000
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/
const DPOP_HEADER = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** base64url(SHA-256(token)): the ath of a proof sent with the token (RFC 9449 §4.2). */
export function accessTokenHash (token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url')
}

/** The URL as htu compares it (§4.3 check 9): parsed and normalized, without query and fragment; undefined if no URL. */
function htuOf (value: string): string | undefined {
  let url: URL
  try { url = new URL(value) } catch { return undefined }
  url.search = ''
  url.hash = ''
  return url.href
}

/**
 * The absolute URL of the endpoint a request reached, as its issuer names it: the issuer identifier and the path
 * under it, never the Host header. Behind a path prefix that is this issuer's (an organization's /o/{slug}), the
 * prefix is the issuer's, not repeated.
 */
export function requestUrlOf (request: FastifyRequest): string {
  const context: IssuerContext = request.issuerContext
  const path = request.url.split('?')[0] as string
  const within = context.basePath !== '' && path.startsWith(`${context.basePath}/`) ? path.slice(context.basePath.length) : path
  return context.url(within)
}

/**
 * Verifies DPoP proofs (RFC 9449): the proof checks of §4.3, single use of each jti per key within the iat window
 * (Redis `dpop:` keys, so a proof is spent on every replica at once; this process's memory while the store fails),
 * and the server nonces of §8 when DPOP_NONCE=required.
 */
export default fp(async (app) => {
  const { config, keys, store, log } = app
  // Derived from the signing key, as the audit trail's client_id fingerprints are: replicas sharing the key agree on
  // nonces with no shared state; a nonce reveals nothing about the key.
  const nonceKey = Buffer.from(hkdfSync('sha256', keys.current.privateKey.export({ type: 'pkcs8', format: 'der' }), '', 'agentidp dpop nonce', 32))
  const nonceOf = (issuer: string, step: number): string => createHmac('sha256', nonceKey).update(`${issuer}\0${step}`).digest('base64url')
  const currentNonce = (issuer: string): string => nonceOf(issuer, Math.floor(Date.now() / NONCE_STEP_MS))
  function nonceIsValid (issuer: string, nonce: string): boolean {
    const step = Math.floor(Date.now() / NONCE_STEP_MS)
    const given = Buffer.from(nonce)
    let valid = false
    for (let made = step + 1; made > step - NONCE_STEPS_ACCEPTED; made--) {
      const expected = Buffer.from(nonceOf(issuer, made))
      if (expected.length === given.length && timingSafeEqual(expected, given)) valid = true
    }
    return valid
  }

  // While the store fails, jtis are spent here: replay is still refused at this replica, not across replicas.
  const spentHere = new ExpiringCache<true>(SPENT_JTIS_IN_MEMORY)
  let warnedAt = 0
  async function spend (orgId: string, jkt: string, jti: string): Promise<boolean> {
    const key = dpopProofKey(orgId, jkt, createHash('sha256').update(jti).digest('base64url'))
    try {
      return await store.setIfAbsent(key, '1', SPENT_JTI_TTL_MS)
    } catch (error) {
      if (Date.now() - warnedAt > 30_000) {
        warnedAt = Date.now()
        log.warn({ err: { message: (error as Error).message } }, 'DPoP proof jtis are checked in this process only: store unavailable')
      }
      if (spentHere.get(key) !== undefined) return false
      spentHere.set(key, true, Date.now() + SPENT_JTI_TTL_MS)
      return true
    }
  }

  app.decorateRequest('dpopProof', null)
  app.decorate('verifyDpopProof', async (request: FastifyRequest, expected: ProofExpectation): Promise<DpopProof | null> => {
    const proof = request.headers.dpop
    if (proof === undefined) return null
    const invalid = (description: string): InvalidDpopProof => new InvalidDpopProof(description)
    const { issuer } = request.issuerContext
    // Node joins repeated DPoP headers with ", ": one header, one JWT (§4.3 checks 1 and 2).
    if (typeof proof !== 'string' || headerCount(request, 'dpop') > 1) throw invalid('the request must carry exactly one DPoP header')
    if (proof.length > MAX_PROOF_LENGTH || !DPOP_HEADER.test(proof)) throw invalid('the DPoP header must be one JWT in compact serialization')
    if (!COMPACT_JWS.test(proof)) throw invalid('the DPoP proof must be signed')
    let verified: Awaited<ReturnType<typeof jwtVerify>>
    try {
      // EmbeddedJWK verifies with the header's jwk, and refuses one that is not a public key (check 7).
      verified = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...DPOP_ALGORITHMS], requiredClaims: ['jti', 'htm', 'htu', 'iat'] })
    } catch (error) {
      throw invalid(`the DPoP proof is invalid: ${proofProblem(error)}`)
    }
    const { payload, protectedHeader } = verified
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > MAX_JTI_LENGTH) throw invalid(`the DPoP proof jti must be a string of 1 to ${MAX_JTI_LENGTH} characters`)
    if (payload.htm !== request.method) throw invalid(`the DPoP proof htm must be ${request.method}`)
    if (typeof payload.htu !== 'string' || htuOf(payload.htu) !== htuOf(expected.htu)) throw invalid(`the DPoP proof htu must be ${expected.htu}`)
    if (expected.accessToken !== undefined && payload.ath !== accessTokenHash(expected.accessToken)) throw invalid('the DPoP proof ath must be the SHA-256 of the access token (base64url)')
    const nowS = Date.now() / 1000
    const iat = payload.iat as number
    if (iat < nowS - PROOF_MAX_AGE_S || iat > nowS + PROOF_MAX_AHEAD_S) throw invalid(`the DPoP proof iat must be within ${PROOF_MAX_AGE_S} seconds before and ${PROOF_MAX_AHEAD_S} seconds after now: make a new proof for each request`)
    // A nonce is checked whenever one is sent (it may have been ours, and expired); demanded only under DPOP_NONCE=required.
    const nonce = currentNonce(issuer)
    if (payload.nonce !== undefined) {
      if (typeof payload.nonce !== 'string' || !nonceIsValid(issuer, payload.nonce)) throw new UseDpopNonce('the DPoP proof nonce is not valid (any more): use the one in the DPoP-Nonce header', nonce)
    } else if (config.dpopNonce === 'required') {
      throw new UseDpopNonce('the DPoP proof must carry a nonce of this server: use the one in the DPoP-Nonce header', nonce)
    }
    const jkt = await calculateJwkThumbprint(protectedHeader.jwk as JWK, 'sha256')
    // Last, once everything else passed: a proof refused for another reason does not spend its jti.
    if (!await spend(request.issuerContext.orgId, jkt, payload.jti)) throw invalid('the DPoP proof was used before: make a new proof (a new jti) for each request')
    return config.dpopNonce === 'required' && payload.nonce !== nonce ? { jkt, jti: payload.jti, nextNonce: nonce } : { jkt, jti: payload.jti }
  })
}, { name: 'dpop', dependencies: ['config', 'keys', 'redis', 'issuer-context'] })

/** What was wrong with a proof jose refused, said without quoting it. */
function proofProblem (error: unknown): string {
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return `alg must be one of ${DPOP_ALGORITHMS.join(', ')}`
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the signature does not verify with its jwk'
  if (error instanceof joseErrors.JWTClaimValidationFailed) return error.claim === 'typ' ? 'typ must be dpop+jwt' : `claim ${error.claim} is missing or wrong`
  if (error instanceof joseErrors.JWTExpired) return 'it has expired'
  if (error instanceof joseErrors.JWSInvalid || error instanceof joseErrors.JWTInvalid) return (error as Error).message.includes('jwk') ? 'its jwk header must be a public key' : 'it is not a well-formed JWT'
  return 'its jwk header must be a public key of an accepted type'
}
