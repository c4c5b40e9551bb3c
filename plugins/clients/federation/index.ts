import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose'
import { inOrganization } from '../../../src/database.js'
import { InvalidGrant } from '../../../src/errors.js'
import { claimsMatch } from '../credentials/federated.js'
import { federatedTrustsOf, forgetExpiredAssertions, markAssertionUsed, type FederatedTrustRow } from '../credentials/repository.js'
import { subjectTrustsOf, type SubjectTrustRow } from '../subject-trusts/repository.js'
import type { FederationRule } from '../credentials/federated.js'
import { FederationKeySets, KeySetUnavailable } from './key-sets.js'
import type { AuthenticatedClient } from '../authentication/index.js'

/**
 * An agent an external token stands for, through exactly one federated credential (credentialId: revoking it kills
 * the tokens issued through it; credentialExpiresAt: when it expires), as an authenticated client would be.
 */
export interface FederatedIdentity extends Omit<AuthenticatedClient, 'method'> {
  /** The external token's iss and sub, as verified. */
  issuer: string
  subject: string
  /** Every claim of the external token, verified. */
  claims: JWTPayload
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Verifies an external JWT (RFC 7523 §2.1 and §3) against the federated credentials of the request's
     * organization: trusts found by its exact iss and sub (an unknown pair costs no outbound request), its signature
     * by the trust's keys, aud (the trust's audience, else `defaultAudience`, else the request's issuer), exp, nbf, a
     * maximum lifetime, exactly one trust whose claims match, and its jti used once when it has one. Throws
     * InvalidGrant, whose description never says which trusts exist. The jwt-bearer grant uses it; token exchange
     * (RFC 8693) can present its subject_token the same way.
     */
    verifyFederatedAssertion(request: FastifyRequest, assertion: string, options?: { defaultAudience?: string }): Promise<FederatedIdentity>
    /**
     * Verifies an external token that names a person (a token exchange's subject_token) against the subject trusts
     * of the request's organization: trusts found by its exact iss, its signature by the trust's keys, aud (the
     * trust's audience, else the request's issuer), exp, nbf, a maximum lifetime, and exactly one trust whose
     * claims match. Throws InvalidGrant, whose description never says which trusts exist.
     */
    verifySubjectToken(request: FastifyRequest, token: string): Promise<ExternalSubject>
  }
}

/** A person an external token names, and the trust it matched (which agents may act for them). */
export interface ExternalSubject {
  issuer: string
  subject: string
  trust: SubjectTrustRow
  claims: JWTPayload
}

/** The asymmetric algorithms an external token may be signed with: never none, never HS*. */
export const FEDERATION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA']
// Kubernetes projected tokens and GitHub Actions tokens are a few kilobytes.
const MAX_ASSERTION_LENGTH = 16_384
const MAX_NAME_LENGTH = 1024
const MAX_JTI_LENGTH = 256
// No external token is accepted that was made to live longer than a day (Kubernetes' longest default projected
// lifetime is 48 h, but anything that long is a long-lived secret under another name).
const MAX_LIFETIME_S = 86_400
const CLOCK_TOLERANCE_S = 5
const JTI_CLEANUP_INTERVAL_MS = 60_000
// What every trust-dependent refusal says: nothing about which issuers, subjects or claims are trusted.
const NO_MATCH = 'the assertion matches no federated credential'

export default fp(async (app) => {
  const { sql, config, metrics, log } = app
  const keySets = new FederationKeySets({
    allowPrivateNetworks: config.federationAllowPrivateNetworks,
    cooldownMs: 30_000,
    maxAgeMs: 600_000,
    timeoutMs: 5000,
    maxResponseBytes: 256 * 1024,
    maxEntries: 1000
  })
  let jtisCleanedAt = 0

  const refuse = (reason: string, description: string): InvalidGrant => {
    metrics.authFailures.inc({ endpoint: 'token', reason: `federation_${reason}` })
    return new InvalidGrant(description)
  }

  /** The unverified iss and sub of a token, and whether its header is one this grant could ever accept. */
  function unverifiedNames (assertion: string): { iss: string, sub: string } {
    if (assertion.length > MAX_ASSERTION_LENGTH) throw refuse('malformed', `assertion must be at most ${MAX_ASSERTION_LENGTH} characters`)
    let alg: unknown, iss: unknown, sub: unknown
    try {
      alg = decodeProtectedHeader(assertion).alg
      ;({ iss, sub } = decodeJwt(assertion))
    } catch {
      throw refuse('malformed', 'assertion is not a signed JWT')
    }
    if (typeof alg !== 'string' || !FEDERATION_ALGORITHMS.includes(alg)) throw refuse('alg', `assertion must be signed with one of ${FEDERATION_ALGORITHMS.join(', ')}`)
    const usable = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= MAX_NAME_LENGTH && !value.includes('\0')
    if (!usable(iss) || !usable(sub)) throw refuse('malformed', 'assertion must carry iss and sub')
    return { iss, sub }
  }

  /**
   * The trusts whose keys verify the token, grouped by key source so each is asked once, with the payload. A key
   * set that cannot be had counts as not verifying; when it is the only one, its reason is the answer.
   */
  async function verifiedBy<T extends Pick<FederationRule, 'issuer' | 'jwks' | 'jwks_uri'>> (assertion: string, trusts: T[]): Promise<{ trusts: T[], payload?: JWTPayload }> {
    const bySource = new Map<string, T[]>()
    for (const trust of trusts) {
      const source = trust.jwks !== null ? `jwks ${JSON.stringify(trust.jwks)}` : trust.jwks_uri !== null ? `uri ${trust.jwks_uri}` : 'discovery'
      bySource.set(source, [...bySource.get(source) ?? [], trust])
    }
    const verified: T[] = []
    let payload: JWTPayload | undefined
    let unavailable: KeySetUnavailable | undefined
    for (const group of bySource.values()) {
      try {
        const result = await jwtVerify(assertion, keySets.keysOf(group[0] as T), { algorithms: FEDERATION_ALGORITHMS, requiredClaims: ['exp'], clockTolerance: CLOCK_TOLERANCE_S })
        payload = result.payload
        verified.push(...group)
      } catch (error) {
        if (error instanceof KeySetUnavailable) { unavailable = error; continue }
        if (error instanceof joseErrors.JWSSignatureVerificationFailed || error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys || error instanceof joseErrors.JOSENotSupported || error instanceof joseErrors.JWKSInvalid) continue
        // Claims are checked only once a signature verified: these name the token's own faults.
        if (error instanceof joseErrors.JWTExpired) throw refuse('expired', 'assertion has expired')
        if (error instanceof joseErrors.JWTClaimValidationFailed) throw refuse(`claim_${error.claim}`, `assertion claim ${error.claim} is missing or not valid now`)
        throw refuse('invalid', 'assertion is invalid')
      }
    }
    if (verified.length === 0 && unavailable !== undefined) {
      log.warn({ err: { message: unavailable.message } }, 'federation issuer keys unavailable')
      throw refuse('keys_unavailable', `${unavailable.message}; retry later`)
    }
    return { trusts: verified, payload }
  }

  /** The payload's lifetime and audience checks, and the one trust among `trusts` whose audience and claims match. */
  function matchingTrust<T extends { audience: string | null, claims: Record<string, unknown> }> (payload: JWTPayload, trusts: T[], defaultAudience: string): T {
    const nowS = Math.floor(Date.now() / 1000)
    const exp = payload.exp as number
    if (exp - (payload.iat ?? nowS) > MAX_LIFETIME_S + CLOCK_TOLERANCE_S) throw refuse('lifetime', `assertion must expire at most ${MAX_LIFETIME_S} seconds after it was issued`)
    const audiences = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : []
    const matching = trusts.filter((trust) => audiences.includes(trust.audience ?? defaultAudience) && claimsMatch(trust.claims, payload as Record<string, unknown>))
    if (matching.length === 0) throw refuse('no_match', NO_MATCH)
    if (matching.length > 1) throw refuse('ambiguous', 'the assertion matches more than one federated credential')
    return matching[0] as T
  }

  app.decorate('verifySubjectToken', async (request: FastifyRequest, token: string): Promise<ExternalSubject> => {
    const { iss, sub } = unverifiedNames(token)
    const trusts = await inOrganization(sql, request.issuerContext.orgId, async (tx) => await subjectTrustsOf(tx, iss))
    if (trusts.length === 0) throw refuse('no_trust', NO_MATCH)
    const verified = await verifiedBy(token, trusts)
    if (verified.payload === undefined) throw refuse('signature', NO_MATCH)
    const trust = matchingTrust(verified.payload, verified.trusts, request.issuerContext.issuer)
    return { issuer: iss, subject: sub, trust, claims: verified.payload }
  })

  app.decorate('verifyFederatedAssertion', async (request: FastifyRequest, assertion: string, options: { defaultAudience?: string } = {}): Promise<FederatedIdentity> => {
    const { iss, sub } = unverifiedNames(assertion)
    const context = request.issuerContext
    // By the exact pair, before anything is fetched: an issuer nobody trusts costs one indexed query.
    const trusts = await inOrganization(sql, context.orgId, async (tx) => await federatedTrustsOf(tx, iss, sub))
    if (trusts.length === 0) throw refuse('no_trust', NO_MATCH)
    const verified = await verifiedBy(assertion, trusts)
    const payload = verified.payload
    if (payload === undefined) throw refuse('signature', NO_MATCH)
    const exp = payload.exp as number
    const trust = matchingTrust(payload, verified.trusts, options.defaultAudience ?? context.issuer)
    if (payload.jti !== undefined) {
      if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > MAX_JTI_LENGTH || payload.jti.includes('\0')) throw refuse('jti', `assertion jti must be a string of at most ${MAX_JTI_LENGTH} characters`)
      // The client assertions' single-use table, in the organization, under a name no client_id can take: `federated {iss}`.
      const jti = payload.jti
      const used = !await inOrganization(sql, context.orgId, async (tx) => await markAssertionUsed(tx, `federated ${iss}`, jti, new Date((exp + CLOCK_TOLERANCE_S) * 1000)))
      if (used) throw refuse('replayed', 'assertion jti was already used')
      if (Date.now() - jtisCleanedAt > JTI_CLEANUP_INTERVAL_MS) {
        jtisCleanedAt = Date.now()
        inOrganization(sql, context.orgId, async (tx) => { await forgetExpiredAssertions(tx) }).catch((error: Error) => { log.warn({ err: { message: error.message } }, 'could not delete expired client assertion jtis') })
      }
    }
    return {
      agentId: trust.agent_id,
      clientId: trust.client_id,
      credentialId: trust.credential_id,
      scopes: trust.scopes,
      resources: trust.resources,
      dpopBoundAccessTokens: trust.dpop_bound_access_tokens,
      credentialExpiresAt: trust.expires_at?.getTime() ?? Infinity,
      issuer: iss,
      subject: sub,
      claims: payload
    }
  })
}, { name: 'client-federation', dependencies: ['postgres', 'metrics', 'config', 'issuer-context'] })
