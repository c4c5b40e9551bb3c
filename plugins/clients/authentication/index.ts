import { createHmac, hkdfSync, randomBytes, type KeyObject } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import { inOrganization } from '../../../src/database.js'
import { InvalidClient, OAuthError, SlowDown, TemporarilyUnavailable } from '../../../src/errors.js'
import { ExpiringCache } from '../../../src/expiring-cache.js'
import { organizationSegment } from '../../../src/store.js'
import { credentialIdOfSecret, HashQueueFull, unmatchableHash, verifySecret } from '../../../src/secrets.js'
import { findAgentByClientId } from '../agents/repository.js'
import { ASSERTION_ALGORITHMS, algorithmsOf, keyOfJwk } from '../credentials/jwk.js'
import { clientStanding, forgetExpiredAssertions, liveCredentialsOfClient, liveKeysOfClient, markAssertionUsed, touchLastUsed, type ClientCredentialRow } from '../credentials/repository.js'
import { actorOf } from '../../audit/public.js'
import { presentedCredentials, UnreadableCredentials, type PresentedCredentials } from './methods/index.js'

/** A client that proved it holds a live credential of an active agent. */
export interface AuthenticatedClient {
  agentId: string
  clientId: string
  credentialId: string
  /** Every scope the agent may be granted. */
  scopes: string[]
  /** The RFC 8707 resources the agent may name, besides the default audience. */
  resources: string[]
  /** RFC 9449 §5.2: the agent gets tokens only with a DPoP proof (agents.dpop_bound_access_tokens). */
  dpopBoundAccessTokens: boolean
  /** When the credential expires (epoch ms; Infinity for never): no token outlives it. */
  credentialExpiresAt: number
  /** The RFC 7591 name of the method it authenticated with (methods/). */
  method: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * RFC 6749 §2.3.1 client authentication for the OAuth endpoints, by exactly one method of the methods/
     * registry. Throws InvalidClient (401), InvalidRequest, a 429 when the client_id has failed too often from this
     * address, or a 503 when its share of the hashing queue is full. `endpoint` names the caller in audit events and
     * metrics. The agent's standing is observed
     * after the call starts: a token whose issue time is taken before the call dies with any watermark set after
     * that observation.
     */
    authenticateClient(request: FastifyRequest, endpoint: string): Promise<AuthenticatedClient>
  }
  interface FastifyRequest {
    /** The client an OAuth endpoint authenticated (plugins/tokens/oauth-route.ts); null before that step. */
    client: AuthenticatedClient | null
  }
}

// A verified secret is trusted from memory for this long (status changes are still seen on the very next request).
const CACHE_TTL_MS = 60_000
const CACHE_MAX_ENTRIES = 50_000
// credentials.last_used_at is written at most this often per credential, off the response path, and the uses noted
// within LAST_USED_FLUSH_MS together, across organizations, in one statement: a burst of first requests by many
// agents (a replica starting, a minute boundary) costs one write, not one transaction a credential.
const LAST_USED_INTERVAL_MS = 60_000
const LAST_USED_FLUSH_MS = 250
const MAX_CREDENTIAL_LENGTH = 512
// How long a refusal by the failure limiter is answered from memory before the store is asked again.
const REFUSAL_MEMORY_MS = 1000
const FAILURE_WINDOW_MS = 60_000
// Hex digits of a client_id fingerprint in the audit trail: enough to tell repeated values apart, not to recover one.
const FINGERPRINT_HEX_DIGITS = 12

interface CachedVerification {
  /** The organization whose issuer verified it: a cached entry answers for that issuer only. */
  orgId: string
  agentId: string
  credentialId: string
  scopes: string[]
  resources: string[]
  dpopBoundAccessTokens: boolean
  credentialExpiresAt: number
  verifiedAtMs: number
}

/** A key credential a client assertion may be verified with, as read from PostgreSQL or cached. */
interface AssertionKey extends CachedVerification {
  key: KeyObject
  algorithms: string[]
}

// private_key_jwt (RFC 7523): an assertion's bounds, and how often jtis of expired assertions are deleted.
const MAX_ASSERTION_LENGTH = 8192
const MAX_JTI_LENGTH = 256
const MAX_ASSERTION_LIFETIME_S = 300
const CLOCK_TOLERANCE_S = 5
const JTI_CLEANUP_INTERVAL_MS = 60_000
// RFC 7515 §4.1.9: typ is a media type, compared case-insensitively, "application/" optional.
const ASSERTION_TYPS = new Set(['jwt', 'client-authentication+jwt'])

export default fp(async (app) => {
  const { sql, store, config, revocations, metrics, log, keys } = app
  // Cache keys are an HMAC under a key that never leaves this process: the cache never holds a secret.
  const cacheKey = randomBytes(32)
  const cache = new ExpiringCache<CachedVerification>(CACHE_MAX_ENTRIES)
  const remember = (key: string, entry: CachedVerification): void => { cache.set(key, entry, entry.verifiedAtMs + CACHE_TTL_MS) }
  const lastUsedWritten = new Map<string, number>()
  const failureLimit = config.rateLimit.authFailuresPerMinute
  // A presented client_id that names no agent may be a secret sent in its place: the trail keeps only an HMAC of it,
  // under a key derived from the signing key, so replicas sharing the key agree on fingerprints and none reverses.
  // Derived once at start from the configured key (app.keys), installation-wide: it signs nothing for an issuer.
  const fingerprintKey = Buffer.from(hkdfSync('sha256', keys.current.privateKey.export({ type: 'pkcs8', format: 'der' }), '', 'agentidp audit client_id fingerprint', 32))
  const fingerprint = (value: string): string => createHmac('sha256', fingerprintKey).update(value).digest('hex').slice(0, FINGERPRINT_HEX_DIGITS)
  // Computed now, not on the first unknown client_id, so that one costs what a wrong secret costs too.
  const dummyHash = await unmatchableHash()
  app.decorateRequest('client', null)

  // The organization is part of every cache key: client_ids are unique within an organization only.
  function keyOf (orgId: string, presented: PresentedCredentials): string {
    return createHmac('sha256', cacheKey).update(orgId).update('\0').update(presented.clientId).update('\0').update(presented.secret).digest('base64url')
  }

  // Credential id → its organization, until the next flush.
  const unwrittenUses = new Map<string, { orgId: string, credentialId: string }>()
  let flushTimer: NodeJS.Timeout | undefined
  let flushing: Promise<void> | undefined

  function noteUse (orgId: string, credentialId: string): void {
    const now = Date.now()
    if (now - (lastUsedWritten.get(credentialId) ?? 0) < LAST_USED_INTERVAL_MS) return
    lastUsedWritten.set(credentialId, now)
    if (lastUsedWritten.size > CACHE_MAX_ENTRIES) lastUsedWritten.clear()
    unwrittenUses.set(credentialId, { orgId, credentialId })
    flushTimer ??= setTimeout(() => { void writeUses() }, LAST_USED_FLUSH_MS).unref()
  }

  async function writeUses (): Promise<void> {
    flushTimer = undefined
    await flushing
    if (unwrittenUses.size === 0) return
    const uses = [...unwrittenUses.values()]
    unwrittenUses.clear()
    // Run as the app role in a transaction (inOrganization) like every query; the function switches organization per row.
    flushing = inOrganization(sql, uses[0]?.orgId as string, async (tx) => { await touchLastUsed(tx, uses, new Date()) })
      .catch((error: Error) => { log.warn({ err: { message: error.message } }, 'could not record credential use') })
      .finally(() => { flushing = undefined })
    await flushing
  }
  // Registered after postgres: the uses noted last are written before the pool closes.
  app.addHook('onClose', async () => {
    if (flushTimer !== undefined) clearTimeout(flushTimer)
    await writeUses()
  })

  const failureKey = (orgId: string, clientId: string, ip: string): string => `rate:authfail:${organizationSegment(orgId)}${clientId}:${ip}`
  // A refusal is remembered here for a second: a flood of wrong secrets for one client_id then costs no Redis
  // round trip a request, and the store is asked again once a second. Bounded: attackers choose client_ids.
  const refusedUntil = new Map<string, number>()

  const tooManyFailures = (): OAuthError => {
    metrics.rateLimited.inc({ route: 'client-auth-failures' })
    return new SlowDown('too many failed client authentications from this address; retry later', 60)
  }

  /** Refuses from memory, before any query, a client_id ('' for none) refused from this address in the last second. */
  function refuseRemembered (key: string): void {
    const until = refusedUntil.get(key)
    if (until === undefined) return
    if (until > Date.now()) throw tooManyFailures()
    refusedUntil.delete(key)
  }

  /**
   * Counts an attempt against this client_id ('' for one that names no agent) and address BEFORE any hash, in one
   * round trip, and refuses it when that count passes the limit: N concurrent wrong secrets let at most the limit
   * through to a hash. Resolves to the key to refund when the attempt succeeds, or undefined when nothing was counted.
   */
  async function reserveAttempt (orgId: string, limitedAs: string, ip: string): Promise<string | undefined> {
    if (failureLimit === 0) return undefined
    const key = failureKey(orgId, limitedAs, ip)
    refuseRemembered(key)
    let count: number
    try {
      count = (await store.hit(key, FAILURE_WINDOW_MS)).count
    } catch {
      return undefined // Redis down: no limiter rather than no service; the hashing slots still bound the CPU.
    }
    if (count > failureLimit) {
      if (refusedUntil.size >= CACHE_MAX_ENTRIES) refusedUntil.clear()
      refusedUntil.set(key, Date.now() + REFUSAL_MEMORY_MS)
      throw tooManyFailures()
    }
    return key
  }

  interface Failure {
    reason: string
    /** The client_id the request named; absent when it named none. Recorded only when it names an agent. */
    clientId?: string
    method?: string
    /** The agent the client_id names; null when it names none. */
    agentId: string | null
    description?: string
  }

  /**
   * Records and refuses a failed client authentication (401 invalid_client), already counted by reserveAttempt.
   * Every one is an auth.failed event, as every refused Bearer token is, including credentials missing or
   * unreadable: probing without naming a client is probing too. A client_id that names no agent may be a secret
   * (credentials swapped): only its fingerprint is recorded.
   */
  async function fail (request: FastifyRequest, endpoint: string, failure: Failure): Promise<never> {
    metrics.authFailures.inc({ endpoint, reason: failure.reason })
    const named = failure.agentId !== null ? failure.clientId : undefined
    const unnamed = failure.agentId === null && failure.clientId !== undefined ? failure.clientId : undefined
    // A refusal changes nothing in the database: its event is group-committed in a transaction of its own.
    await app.audit.record({
      type: 'auth.failed',
      agentId: failure.agentId,
      ...actorOf(request, 'anonymous'),
      data: {
        endpoint,
        client_id: named ?? null,
        ...(unnamed === undefined ? {} : { client_id_fingerprint: fingerprint(unnamed) }),
        reason: failure.reason,
        method: failure.method ?? null
      }
    })
    throw new InvalidClient(failure.description)
  }

  /** A request that names no usable client: counted against its address alone, then recorded and refused. */
  async function failNameless (request: FastifyRequest, endpoint: string, failure: Omit<Failure, 'agentId'>): Promise<never> {
    await reserveAttempt(request.issuerContext.orgId, '', request.ip)
    return await fail(request, endpoint, { ...failure, agentId: null })
  }

  /**
   * Verifies in the client_id's share of the hashing slots; a full queue is a 503 to retry shortly, not a wait, and
   * gives back the attempt reserved for it: no hash ran.
   */
  async function verifyFairly (hash: string, secret: string, fairnessKey: string, reserved: string | undefined): Promise<boolean> {
    try {
      const matches = await verifySecret(hash, secret, fairnessKey)
      metrics.secretVerifications.inc()
      return matches
    } catch (error) {
      if (!(error instanceof HashQueueFull)) throw error
      if (reserved !== undefined) store.refund(reserved).catch(() => {})
      metrics.rateLimited.inc({ route: 'client-auth-hashing' })
      throw new TemporarilyUnavailable('too many client authentications are waiting; retry shortly', 1)
    }
  }

  const keyCache = new ExpiringCache<AssertionKey>(CACHE_MAX_ENTRIES)
  // When each organization's jtis of expired assertions were last deleted.
  const jtisCleanedAt = new Map<string, number>()
  const assertionKeyOf = (orgId: string, clientId: string, kid: string | undefined): string => createHmac('sha256', cacheKey).update('jwt\0').update(orgId).update('\0').update(clientId).update('\0').update(kid ?? '').digest('base64url')

  /** The client's live key credentials an assertion may name, its agent (null: none) and the agent's status. */
  interface KeysFound { keys: AssertionKey[], agentId: string | null, status?: string }

  async function assertionKeysOf (orgId: string, clientId: string, kid: string | undefined): Promise<KeysFound> {
    const readAtMs = Date.now()
    const { rows, agentId } = await inOrganization(sql, orgId, async (tx) => {
      const rows = await liveKeysOfClient(tx, clientId, kid)
      return { rows, agentId: rows[0]?.agent_id ?? (await findAgentByClientId(tx, clientId))?.id ?? null }
    })
    const status = rows[0]?.agent_status
    const keys = rows.map((row) => ({
      orgId,
      agentId: row.agent_id,
      credentialId: row.credential_id,
      scopes: row.scopes,
      resources: row.resources,
      dpopBoundAccessTokens: row.dpop_bound_access_tokens,
      credentialExpiresAt: row.expires_at?.getTime() ?? Infinity,
      verifiedAtMs: readAtMs,
      key: keyOfJwk(row.public_jwk),
      algorithms: algorithmsOf(row.public_jwk)
    }))
    return { keys, agentId, status }
  }

  type Checked = { key: AssertionKey, payload: JWTPayload } | { reason: string, description: string, badSignature?: true }

  /**
   * RFC 7523 §3 and OpenID Connect Core §9: the typ, the algorithm (asymmetric only), the signature by one of
   * `keys`, iss = sub = client_id, aud this issuer (or its token endpoint), exp at most 5 minutes after iat, nbf, jti.
   */
  async function checkAssertion (request: FastifyRequest, assertion: string, header: ProtectedHeaderParameters, clientId: string, keys: AssertionKey[]): Promise<Checked> {
    const typ = header.typ?.toLowerCase().replace(/^application\//, '')
    if (typ !== undefined && !ASSERTION_TYPS.has(typ)) return { reason: 'assertion_typ', description: 'client_assertion typ must be absent, JWT or client-authentication+jwt' }
    const alg = header.alg ?? ''
    if (!(ASSERTION_ALGORITHMS as readonly string[]).includes(alg)) return { reason: 'assertion_alg', description: `client_assertion must be signed with one of ${ASSERTION_ALGORITHMS.join(', ')}` }
    let verified: { key: AssertionKey, payload: JWTPayload } | undefined
    for (const key of keys.filter((each) => each.algorithms.includes(alg))) {
      try {
        const { payload } = await jwtVerify(assertion, key.key, { algorithms: [alg], issuer: clientId, subject: clientId, requiredClaims: ['exp', 'jti'], clockTolerance: CLOCK_TOLERANCE_S })
        verified = { key, payload }
        break
      } catch (error) {
        if (error instanceof joseErrors.JWSSignatureVerificationFailed) continue
        // Claims are checked only once the signature verified.
        if (error instanceof joseErrors.JWTExpired) return { reason: 'assertion_expired', description: 'client_assertion has expired' }
        if (error instanceof joseErrors.JWTClaimValidationFailed) return { reason: `assertion_${error.claim}`, description: `client_assertion claim ${error.claim} is missing or wrong` }
        return { reason: 'assertion_invalid', description: 'client_assertion is invalid' }
      }
    }
    if (verified === undefined) return { reason: keys.length === 0 ? 'unknown_client_or_key' : 'assertion_signature', description: 'client_assertion is not signed by a live key of the client', badSignature: true }
    const { payload } = verified
    const context = request.issuerContext
    const audiences = typeof payload.aud === 'string' ? [payload.aud] : payload.aud ?? []
    // One audience only, this issuer, or (RFC 7523 as first published) its token endpoint.
    if (audiences.length !== 1 || (audiences[0] !== context.issuer && audiences[0] !== context.url('/oauth2/token'))) return { reason: 'assertion_aud', description: `client_assertion aud must be ${context.issuer}` }
    const nowS = Math.floor(Date.now() / 1000)
    const exp = payload.exp as number
    if (exp - (payload.iat ?? nowS) > MAX_ASSERTION_LIFETIME_S + (payload.iat === undefined ? CLOCK_TOLERANCE_S : 0)) return { reason: 'assertion_lifetime', description: `client_assertion exp must be at most ${MAX_ASSERTION_LIFETIME_S} seconds after iat` }
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > MAX_JTI_LENGTH || payload.jti.includes('\0')) return { reason: 'assertion_jti', description: 'client_assertion jti must be a string of at most 256 characters' }
    return verified
  }

  /** private_key_jwt: verifies the assertion against the client's live keys, then marks its jti used. */
  async function authenticateByAssertion (request: FastifyRequest, endpoint: string, presented: PresentedCredentials): Promise<AuthenticatedClient> {
    const assertion = presented.assertion as string
    const { clientId, method } = presented
    if (assertion.length > MAX_ASSERTION_LENGTH || clientId.length === 0 || clientId.length > MAX_CREDENTIAL_LENGTH || clientId.includes('\0')) {
      return await failNameless(request, endpoint, { reason: 'malformed_credentials', clientId, method })
    }
    let header: ProtectedHeaderParameters
    try {
      header = decodeProtectedHeader(assertion)
    } catch {
      return await failNameless(request, endpoint, { reason: 'malformed_credentials', clientId, method, description: 'client_assertion is not a JWT' })
    }
    // A kid or jti holding NUL cannot reach a query (PostgreSQL text has none): it names no key, it is no usable jti.
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length > MAX_CREDENTIAL_LENGTH || header.kid.includes('\0'))) {
      return await failNameless(request, endpoint, { reason: 'malformed_credentials', clientId, method, description: 'client_assertion kid is malformed' })
    }
    const { kid } = header
    const { orgId } = request.issuerContext
    const cacheKeyOfKid = assertionKeyOf(orgId, clientId, kid)
    refuseRemembered(failureKey(orgId, clientId, request.ip))

    const cached = keyCache.get(cacheKeyOfKid)
    const confirmed = cached === undefined ? undefined : await confirmCached(cached)
    if (cached !== undefined && confirmed === undefined) keyCache.delete(cacheKeyOfKid)
    let found: KeysFound | undefined = cached === undefined || confirmed === undefined ? undefined : { keys: [{ ...cached, ...confirmed }], agentId: confirmed.agentId, status: 'active' }
    let checked = found === undefined ? undefined : await checkAssertion(request, assertion, header, clientId, found.keys)
    // A cached key that does not verify it may be a key rotated without a kid: the keys are read afresh.
    if (found === undefined || checked === undefined || 'badSignature' in checked) {
      const read = await assertionKeysOf(orgId, clientId, kid)
      found = read
      checked = read.status === undefined || read.status === 'active' ? await checkAssertion(request, assertion, header, clientId, read.keys) : undefined
    }
    const limitedAs = found.agentId === null ? '' : clientId
    const reserved = await reserveAttempt(orgId, limitedAs, request.ip)
    const named = { clientId, method, agentId: found.agentId }
    if (checked === undefined) return await fail(request, endpoint, { ...named, reason: `agent_${found.status ?? 'unknown'}` })
    if ('reason' in checked) return await fail(request, endpoint, { ...named, reason: checked.reason, description: checked.description })
    // After the signature verified, so an unsigned guess cannot burn a jti; atomic, so two concurrent uses of one
    // assertion cannot both pass.
    const expiresAt = new Date((checked.payload.exp as number + CLOCK_TOLERANCE_S) * 1000)
    if (!await inOrganization(sql, orgId, async (tx) => await markAssertionUsed(tx, clientId, checked.payload.jti as string, expiresAt))) {
      return await fail(request, endpoint, { ...named, reason: 'assertion_replayed', description: 'client_assertion jti was already used' })
    }
    if (reserved !== undefined) store.refund(reserved).catch(() => {})
    const { key } = checked
    keyCache.set(cacheKeyOfKid, key, key.verifiedAtMs + CACHE_TTL_MS)
    noteUse(orgId, key.credentialId)
    if (Date.now() - (jtisCleanedAt.get(orgId) ?? 0) > JTI_CLEANUP_INTERVAL_MS) {
      jtisCleanedAt.set(orgId, Date.now())
      inOrganization(sql, orgId, async (tx) => { await forgetExpiredAssertions(tx) }).catch((error: Error) => { log.warn({ err: { message: error.message } }, 'could not delete expired client assertion jtis') })
    }
    return { agentId: key.agentId, clientId, credentialId: key.credentialId, scopes: key.scopes, resources: key.resources, dpopBoundAccessTokens: key.dpopBoundAccessTokens, credentialExpiresAt: key.credentialExpiresAt, method }
  }

  async function readCredentials (request: FastifyRequest, endpoint: string): Promise<PresentedCredentials> {
    try {
      return presentedCredentials(request)
    } catch (error) {
      if (!(error instanceof UnreadableCredentials)) throw error
      return await failNameless(request, endpoint, { reason: error.reason, method: error.method, description: error.description })
    }
  }

  /** Confirms a cached verification: from Redis when nothing changed, else from PostgreSQL. */
  async function confirmCached (entry: CachedVerification): Promise<CachedVerification | undefined> {
    if (entry.credentialExpiresAt <= Date.now()) return undefined
    if (!await revocations.changedSince(entry.orgId, entry.agentId, entry.credentialId, entry.verifiedAtMs)) return entry
    // The time of the read, not of its answer: a change committed meanwhile must still look newer.
    const readAtMs = Date.now()
    const standing = await inOrganization(sql, entry.orgId, async (tx) => await clientStanding(tx, entry.credentialId))
    if (standing === undefined || standing.agent_status !== 'active' || standing.revoked_at !== null) return undefined
    if (standing.expires_at !== null && standing.expires_at.getTime() <= Date.now()) return undefined
    return { ...entry, scopes: standing.scopes, resources: standing.resources, dpopBoundAccessTokens: standing.dpop_bound_access_tokens, verifiedAtMs: readAtMs }
  }

  app.decorate('authenticateClient', async (request: FastifyRequest, endpoint: string): Promise<AuthenticatedClient> => {
    const presented = await readCredentials(request, endpoint)
    if (presented.assertion !== undefined) return await authenticateByAssertion(request, endpoint, presented)
    // PostgreSQL text cannot hold NUL: such a client_id (Basic credentials in UTF-16, say) names no client, and
    // must not reach a query, where it was a 500. No client_id this malformed belongs to an agent: none is looked up.
    if (presented.clientId.length === 0 || presented.clientId.length > MAX_CREDENTIAL_LENGTH || presented.secret.length > MAX_CREDENTIAL_LENGTH || presented.clientId.includes('\0')) {
      return await failNameless(request, endpoint, { reason: 'malformed_credentials', clientId: presented.clientId, method: presented.method })
    }
    const { orgId } = request.issuerContext
    const key = keyOf(orgId, presented)
    const cached = cache.get(key)
    if (cached !== undefined) {
      const confirmed = await confirmCached(cached)
      if (confirmed !== undefined) {
        if (confirmed !== cached) remember(key, confirmed)
        noteUse(orgId, confirmed.credentialId)
        return { agentId: confirmed.agentId, clientId: presented.clientId, credentialId: confirmed.credentialId, scopes: confirmed.scopes, resources: confirmed.resources, dpopBoundAccessTokens: confirmed.dpopBoundAccessTokens, credentialExpiresAt: confirmed.credentialExpiresAt, method: presented.method }
      }
      cache.delete(key)
    }

    refuseRemembered(failureKey(orgId, presented.clientId, request.ip))
    // The secret names its credential, so at most one hash is verified whatever the agent holds; a secret that
    // names none (the bootstrap admin's) is checked against the agent's bootstrap credential, else its single live one.
    const readAtMs = Date.now()
    const { rows, agentId } = await inOrganization(sql, orgId, async (tx) => {
      const rows = await liveCredentialsOfClient(tx, presented.clientId, credentialIdOfSecret(presented.secret))
      const row: ClientCredentialRow | undefined = rows.length === 1 || rows[0]?.bootstrap === true ? rows[0] : undefined
      return { rows, agentId: row?.agent_id ?? (await findAgentByClientId(tx, presented.clientId))?.id ?? null }
    })
    const row: ClientCredentialRow | undefined = rows.length === 1 || rows[0]?.bootstrap === true ? rows[0] : undefined
    // Made-up client_ids share their address's allowance (and one share of the hashing slots), not one each.
    const limitedAs = agentId === null ? '' : presented.clientId
    const reserved = await reserveAttempt(orgId, limitedAs, request.ip)
    // Every refusal from here costs one hash, the dummy's when there is no hash to check: timing tells no unknown
    // client_id or credential from a wrong secret.
    const matches = await verifyFairly(row?.secret_hash ?? dummyHash, presented.secret, limitedAs, reserved)
    const named = { clientId: presented.clientId, method: presented.method, agentId }
    if (row === undefined) return await fail(request, endpoint, { ...named, reason: rows.length === 0 ? 'unknown_client_or_credential' : 'credential_not_named' })
    if (row.agent_status !== 'active') return await fail(request, endpoint, { ...named, reason: `agent_${row.agent_status}` })
    if (!matches) return await fail(request, endpoint, { ...named, reason: 'wrong_secret' })
    // A success uses none of the failure allowance.
    if (reserved !== undefined) store.refund(reserved).catch(() => {})

    const credentialExpiresAt = row.expires_at?.getTime() ?? Infinity
    remember(key, {
      orgId,
      agentId: row.agent_id,
      credentialId: row.credential_id,
      scopes: row.scopes,
      resources: row.resources,
      dpopBoundAccessTokens: row.dpop_bound_access_tokens,
      credentialExpiresAt,
      verifiedAtMs: readAtMs
    })
    noteUse(orgId, row.credential_id)
    return { agentId: row.agent_id, clientId: row.client_id, credentialId: row.credential_id, scopes: row.scopes, resources: row.resources, dpopBoundAccessTokens: row.dpop_bound_access_tokens, credentialExpiresAt, method: presented.method }
  })
}, { name: 'client-auth', dependencies: ['postgres', 'redis', 'revocations', 'audit', 'metrics', 'config', 'keys'] })
