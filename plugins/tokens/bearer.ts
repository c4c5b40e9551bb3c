import { createHash } from 'node:crypto'
import type { FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { errors, jwtVerify, type JWTPayload } from 'jose'
import { OAuthError, ProblemError } from '../../src/errors.js'
import { ExpiringCache } from '../../src/expiring-cache.js'
import { actorOf } from '../audit/public.js'
import { issuedAtMsOf, tokenRefOf } from '../revocation/public.js'
import { DPOP_ALGORITHMS, requestUrlOf, type DpopProof } from './dpop.js'
import { headerCount } from './headers.js'
import type { IssuerContext } from './issuer-context.js'

/** The verified caller of a management API request. */
export interface Principal {
  agentId: string
  clientId: string
  scopes: Set<string>
  jti: string
  /** Issue time in epoch ms (from the time-ordered jti when it carries one). */
  issuedAtMs: number
  /** How the token was presented: Bearer, or DPoP with a proof of its key. */
  scheme: TokenScheme
}

/** The claims of an access token this server issued (RFC 9068). */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  jti: string
  client_id: string
  scope: string
  /** The credential the token was issued against (private claim of /oauth2/token), when it names one. */
  credential_id?: string
  /** The organization whose issuer issued it (tokens from before organizations have none: the default's). */
  org_id?: string
  /** RFC 9449 §6.1: the token is bound to the DPoP key with this RFC 7638 thumbprint. */
  cnf?: { jkt: string }
  /** RFC 8693 §4.1: the agent acting for `sub` (a token exchange), the earlier actors nested inside, newest first. */
  act?: ActorClaim
  /** RFC 8693 §4.4: who may act for `sub` with this token; a token exchange by anyone else is refused. */
  may_act?: { sub?: string, iss?: string }
  /** What an exchanged token rests on (private claim): the tokens it was exchanged from, newest first; see TokenRef. */
  rests_on?: Array<{ jti: string, credential_id?: string }>
}

/** An actor of an `act` chain (RFC 8693 §4.1): an agent of an issuer, and whom it acted after. */
export interface ActorClaim {
  sub: string
  iss?: string
  sub_profile?: string
  act?: ActorClaim
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Verifies an access token issued by the issuer given (the request's `issuerContext`): signature by one of its
     * published keys under that key's own algorithm, typ, iss, exp, nbf.
     */
    verifyAccessToken(token: string, issuer: IssuerContext, options?: { audience?: string }): Promise<AccessTokenClaims>
    /**
     * A hook that requires a Bearer access token holding every one of the scopes. Use it as `preValidation`:
     * after the rate limit (onRequest), before schema validation, so an unauthenticated bad request is a 401.
     */
    requireScopes(...scopes: string[]): preValidationAsyncHookHandler
  }
  interface FastifyRequest {
    principal?: Principal
  }
}

/**
 * Our tokens are a few hundred bytes; anything far larger is refused before it is parsed. The token endpoint never
 * issues a longer one (see issuer.ts): the bounds on scopes and resources keep every token well within it.
 */
export const MAX_TOKEN_LENGTH = 8192
// RFC 6750 §2.1 b64token after the scheme, which is case-insensitive (RFC 9110 §11.1): "bearer" is Bearer too.
// RFC 9449 §7.1: a DPoP-bound token is sent under the DPoP scheme, in the same token68 syntax.
const TOKEN_SCHEME = /^(bearer|dpop)(?: |$)/i
const TOKEN_CREDENTIALS = /^(?:bearer|dpop) ([A-Za-z0-9\-._~+/]+=*)$/i
const JKT = /^[A-Za-z0-9_-]{43}$/
// Seconds of clock skew tolerated between replicas for exp, nbf and iat.
const CLOCK_TOLERANCE_SECONDS = 5
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// Verified tokens remembered at most (a few hundred bytes each).
const VERIFIED_TOKENS_MAX_ENTRIES = 10_000

/**
 * Claims jose does not check: types and shapes the rest of the server relies on, and an issue time in the
 * past (jose checks iat only with maxTokenAge; a token from the future would outlive every watermark).
 */
function checkClaims (payload: JWTPayload): AccessTokenClaims {
  const claims = payload as AccessTokenClaims
  const invalid = (claim: string, reason: string): never => { throw new errors.JWTClaimValidationFailed(`"${claim}" ${reason}`, payload, claim, 'check_failed') }
  // An agent id; or, in a token an agent holds for a person (token exchange: act names the agent), that person's
  // qualified id, which is never a UUID.
  if (typeof claims.sub !== 'string' || (!UUID.test(claims.sub) && (claims.act === undefined || claims.sub === '' || claims.sub.length > 2048))) invalid('sub', 'is not an agent id')
  if (typeof claims.jti !== 'string' || claims.jti === '' || claims.jti.length > 128) invalid('jti', 'is not a token id')
  if (typeof claims.client_id !== 'string') invalid('client_id', 'is not a string')
  if (typeof claims.scope !== 'string') invalid('scope', 'is not a string')
  if (claims.credential_id !== undefined && (typeof claims.credential_id !== 'string' || !UUID.test(claims.credential_id))) invalid('credential_id', 'is not a credential id')
  if (claims.cnf !== undefined && (typeof claims.cnf !== 'object' || claims.cnf === null || typeof claims.cnf.jkt !== 'string' || !JKT.test(claims.cnf.jkt))) invalid('cnf', 'is not a DPoP key confirmation')
  if (claims.act !== undefined && actDepthOf(claims.act) === undefined) invalid('act', 'is not an actor chain')
  if (claims.may_act !== undefined && (typeof claims.may_act !== 'object' || claims.may_act === null || Array.isArray(claims.may_act))) invalid('may_act', 'is not an object')
  if (claims.rests_on !== undefined && !restsOnShape(claims.rests_on)) invalid('rests_on', 'is not a list of tokens')
  const latestMs = Date.now() + CLOCK_TOLERANCE_SECONDS * 1000
  if (claims.iat * 1000 > latestMs || issuedAtMsOf(claims) > latestMs) invalid('iat', 'is in the future')
  return claims
}

/** How many tokens an exchanged token may rest on, and how deep an act chain a token may carry, at most. */
const MAX_CHAIN_LENGTH = 32

/**
 * How many actors an `act` chain holds (1 for a single act), or undefined when it is not one: each actor an object
 * with a string sub, at most MAX_CHAIN_LENGTH deep.
 */
export function actDepthOf (act: unknown): number | undefined {
  let depth = 0
  for (let actor = act; actor !== undefined; actor = (actor as { act?: unknown }).act) {
    if (actor === null || typeof actor !== 'object' || Array.isArray(actor) || typeof (actor as { sub?: unknown }).sub !== 'string') return undefined
    depth += 1
    if (depth > MAX_CHAIN_LENGTH) return undefined
  }
  return depth
}

function restsOnShape (value: unknown): boolean {
  return Array.isArray(value) && value.length <= MAX_CHAIN_LENGTH && value.every((entry) =>
    entry !== null && typeof entry === 'object' && typeof entry.jti === 'string' && entry.jti.length <= 128 &&
    (entry.credential_id === undefined || (typeof entry.credential_id === 'string' && UUID.test(entry.credential_id))))
}

// An iss quoted back to the caller and into the log: printable ASCII of a sensible length, never a header breaker.
const PRINTABLE_ISSUER = /^[\x21-\x7e]{1,256}$/

/**
 * The iss of a token refused only because of its issuer (jose checks claims after the signature, so the key was
 * ours), when it is printable; undefined for every other refusal.
 */
function foreignIssuerOf (error: unknown): string | undefined {
  if (!(error instanceof errors.JWTClaimValidationFailed) || error.claim !== 'iss') return undefined
  const iss = error.payload.iss
  return typeof iss === 'string' && PRINTABLE_ISSUER.test(iss) ? iss : undefined
}

/** How many Authorization headers the request carried (Node folds repeats into the first one). */
export function authorizationHeaderCount (request: FastifyRequest): number {
  return headerCount(request, 'authorization')
}

/** The scheme a management API request presented its token under: RFC 6750 Bearer, or RFC 9449 DPoP with a proof. */
export type TokenScheme = 'Bearer' | 'DPoP'

type ChallengeError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce'

/**
 * A challenge of RFC 6750 §3 (Bearer) or RFC 9449 §7.1 (DPoP, naming the proof algorithms this server accepts);
 * `error` and its description only when the request carried credentials of that scheme.
 */
function challenge (scheme: TokenScheme, error?: ChallengeError, detail?: string, scope?: string): string {
  const params = ['realm="agentidp"']
  if (error !== undefined) params.push(`error="${error}"`, `error_description="${(detail ?? '').replace(/"/g, "'")}"`)
  if (scope !== undefined) params.push(`scope="${scope}"`)
  if (scheme === 'DPoP') params.push(`algs="${DPOP_ALGORITHMS.join(' ')}"`)
  return `${scheme} ${params.join(', ')}`
}

/**
 * A 400, 401 or 403 that tells the client what went wrong in WWW-Authenticate, under the scheme it used. A request
 * that presented no usable credentials (`scheme` 'any') is offered both schemes (RFC 9449 §7.2).
 */
function authenticationError (status: 400 | 401 | 403, scheme: TokenScheme | 'any', error: ChallengeError | undefined, detail: string, options: { scope?: string, missingScopes?: string[], headers?: Record<string, string> } = {}): ProblemError {
  const value = scheme === 'any' ? `${challenge('Bearer')}, ${challenge('DPoP')}` : challenge(scheme, error, detail, options.scope)
  return new ProblemError(status, detail, { ...options.headers, 'www-authenticate': value }, undefined, options.missingScopes)
}

/** A request refused for want of authority (not of authentication): recorded as one authz.denied event. */
export interface Denial {
  /** Who was refused: the caller's client_id, and its agent. */
  actor: string
  actorAgentId: string
  /** What was attempted: `agent.update`, `credential.create`, `token.revoke`, … or the route for a missing scope. */
  action: string
  /** insufficient_scope, management_scope_not_held or bootstrap_admin. */
  reason: string
  /** The agent acted on, when there is one. */
  agentId?: string
  /** The scopes the caller would need and does not hold. */
  missingScopes?: string[]
}

const denials = new WeakMap<Error, Denial>()

/**
 * Marks the error (a 403 or 409 problem, or an OAuth error) as a refusal: when it reaches the error handler, the
 * auth plugin's onError hook records it as authz.denied, whichever route or transaction it was thrown from.
 */
export function refused<E extends Error> (error: E, denial: Denial): E {
  denials.set(error, denial)
  return error
}

/**
 * Management API authentication: access tokens issued by this server, verified locally against the published keys,
 * with scopes per route: Bearer tokens (RFC 6750), and DPoP-bound tokens under the DPoP scheme with a proof of their
 * key (RFC 9449 §7). Failures are recorded as auth.failed.
 */
export default fp(async (app) => {
  // A token that verified is remembered until it expires, under its SHA-256 (the cache never holds a token):
  // resource servers introspect the same token for every call they serve, and a check through jose costs far
  // more CPU than the hash. Expiry is checked on every hit; revocation is never cached (the callers ask each time).
  const verified = new ExpiringCache<AccessTokenClaims>(VERIFIED_TOKENS_MAX_ENTRIES)

  app.decorate('verifyAccessToken', async (token: string, { issuer, keys }: IssuerContext, options: { audience?: string } = {}) => {
    if (token.length > MAX_TOKEN_LENGTH) throw new errors.JWTInvalid('token too long')
    // The issuer is part of the key: a token verified for one issuer is never taken for another's from the cache.
    const cacheKey = createHash('sha256').update(issuer).update('\0').update(options.audience ?? '').update('\0').update(token).digest('base64url')
    const known = verified.get(cacheKey)
    if (known !== undefined) return known
    const { payload } = await jwtVerify(token, (header) => {
      const key = header.kid === undefined ? undefined : keys.byKid.get(header.kid)
      // Each key verifies only its own algorithm: a mixed key set (RSA and EC during a migration) is no way to
      // get a signature checked under another algorithm than the key was published for.
      if (key === undefined || header.alg !== key.alg) throw new errors.JWKSNoMatchingKey()
      return key.key
    }, {
      algorithms: keys.algorithms,
      issuer,
      typ: 'at+jwt',
      audience: options.audience,
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id', 'scope'],
      clockTolerance: CLOCK_TOLERANCE_SECONDS
    })
    const claims = Object.freeze(checkClaims(payload))
    // Until jose would call it expired: exp plus the tolerance (an nbf or iat that passed stays passed).
    verified.set(cacheKey, claims, (claims.exp + CLOCK_TOLERANCE_SECONDS) * 1000)
    return claims
  })

  /**
   * The RFC 9449 proof of a DPoP request (§7.1): one for this request's method and URL (built from the issuer, never
   * from Host), with the token's hash as ath, signed by the key the token is bound to. Its refusals are 401s
   * under the DPoP scheme (use_dpop_nonce with a DPoP-Nonce header).
   */
  async function checkProof (request: FastifyRequest, reply: FastifyReply, token: string, claims: AccessTokenClaims): Promise<void> {
    const jkt = claims.cnf?.jkt
    if (jkt === undefined) throw authenticationError(401, 'DPoP', 'invalid_token', 'the access token is not bound to a DPoP key: send it as Bearer')
    let proof: DpopProof | null
    try {
      proof = await app.verifyDpopProof(request, { htu: requestUrlOf(request), accessToken: token })
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error
      throw authenticationError(401, 'DPoP', error.error as ChallengeError, error.description, { headers: error.headers })
    }
    if (proof === null) throw authenticationError(401, 'DPoP', 'invalid_dpop_proof', 'a DPoP proof (the DPoP header) is required with a DPoP access token')
    if (proof.jkt !== jkt) throw authenticationError(401, 'DPoP', 'invalid_dpop_proof', 'the DPoP proof is signed with another key than the access token is bound to')
    if (proof.nextNonce !== undefined) reply.header('dpop-nonce', proof.nextNonce)
  }

  async function authenticate (request: FastifyRequest, reply: FastifyReply): Promise<Principal> {
    const header = request.headers.authorization
    if (header === undefined) throw authenticationError(401, 'any', undefined, 'a Bearer access token is required')
    // Node keeps only the first of repeated Authorization headers; which one a proxy in front saw is anyone's
    // guess, so a request that carries two is refused (RFC 6750 §3.1: more than one method is invalid_request).
    if (typeof header !== 'string' || authorizationHeaderCount(request) > 1) throw authenticationError(400, 'Bearer', 'invalid_request', 'the request carries more than one Authorization header')
    // Another scheme is no token credential at all: 401 with the challenges and no error code (RFC 6750 §3.1).
    const schemeMatch = TOKEN_SCHEME.exec(header)
    if (schemeMatch === null) throw authenticationError(401, 'any', undefined, 'a Bearer access token is required; the Authorization header uses another scheme')
    const scheme: TokenScheme = (schemeMatch[1] as string).toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer'
    const refuse = (status: 400 | 401, error: ChallengeError, detail: string): ProblemError => authenticationError(status, scheme, error, detail)
    const match = TOKEN_CREDENTIALS.exec(header)
    if (match === null) throw refuse(400, 'invalid_request', `the Authorization header must be "${scheme} <access token>"`)
    const presented = match[1] as string
    let claims: AccessTokenClaims
    const { issuerContext } = request
    try {
      // Management API tokens must be meant for this server: aud includes the issuer.
      claims = await app.verifyAccessToken(presented, issuerContext, { audience: issuerContext.issuer })
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw refuse(401, 'invalid_token', 'the access token has expired')
      const issuer = foreignIssuerOf(error)
      if (issuer === undefined) throw refuse(401, 'invalid_token', 'the access token is invalid')
      // Signed by our key, yet issued under another name: ISSUER changed, or differs between replicas, or the
      // client took its token from http://127.0.0.1 while ISSUER says localhost. Worth a line for the operator.
      request.log.warn({ expected: issuerContext.issuer, iss: issuer }, 'access token from another issuer refused')
      throw refuse(401, 'invalid_token', `the access token was issued by ${issuer}, not by this server (ISSUER is ${issuerContext.issuer})`)
    }
    // The management API acts for agents: a token an agent holds for a person is for the person's resource servers.
    if (!UUID.test(claims.sub)) throw refuse(401, 'invalid_token', 'the access token acts for a person, not for an agent: the management API takes agents\' tokens only')
    // RFC 9449 §7.2: a token bound to a key is worthless without it, so it is never taken as a Bearer token.
    if (scheme === 'Bearer' && claims.cnf !== undefined) throw authenticationError(401, 'DPoP', 'invalid_token', 'the access token is bound to a DPoP key: send it as Authorization: DPoP with a DPoP proof')
    if (scheme === 'DPoP') await checkProof(request, reply, presented, claims)
    const token = tokenRefOf(issuerContext.orgId, claims)
    // Revoked by jti, or issued before its agent was suspended/decommissioned or its credential revoked.
    // A store failure here is not the caller's fault: it propagates (503), it is not an auth failure.
    if (await app.revocations.isRevoked(token)) throw refuse(401, 'invalid_token', 'the access token has been revoked')
    return {
      agentId: claims.sub,
      clientId: claims.client_id,
      scopes: new Set(claims.scope.split(' ').filter(Boolean)),
      jti: claims.jti,
      issuedAtMs: token.issuedAtMs,
      scheme
    }
  }

  app.decorate('requireScopes', (...scopes: string[]): preValidationAsyncHookHandler => {
    return async function requireScopes (request: FastifyRequest, reply: FastifyReply) {
      let principal: Principal
      try {
        principal = await authenticate(request, reply)
      } catch (error) {
        if (!(error instanceof ProblemError)) throw error
        // A refusal changes nothing in the database: its event is group-committed in a transaction of its own.
        await app.audit.record({ type: 'auth.failed', ...actorOf(request), data: { endpoint: request.routeOptions.url, method: request.method, reason: error.detail } })
        throw error
      }
      request.principal = principal
      const missing = scopes.filter((scope) => !principal.scopes.has(scope))
      if (missing.length > 0) {
        throw refused(authenticationError(403, principal.scheme, 'insufficient_scope', `this operation needs the scope ${missing.join(' ')}`, { scope: scopes.join(' '), missingScopes: missing }), {
          actor: principal.clientId, actorAgentId: principal.agentId, action: `${request.method} ${request.routeOptions.url ?? request.url}`, reason: 'insufficient_scope', missingScopes: missing
        })
      }
    }
  })

  // Every refusal is in the trail, group-committed (it records no change). Recorded here, after the refused work's
  // transaction has rolled back (on the embedded default, it held the one connection the group commit needs); a
  // trail that cannot be written does not turn the refusal into a success or a 5xx: the refusal stands, with a warning.
  app.addHook('onError', async (request, _reply, error) => {
    const denial = denials.get(error)
    if (denial === undefined) return
    try {
      await app.audit.record({
        type: 'authz.denied',
        agentId: denial.agentId ?? null,
        ...actorOf(request, denial.actor),
        data: {
          action: denial.action,
          reason: denial.reason,
          missing_scopes: denial.missingScopes ?? [],
          actor_agent_id: denial.actorAgentId,
          endpoint: request.routeOptions.url ?? null,
          method: request.method
        }
      })
    } catch (failure) {
      request.log.warn({ err: { message: (failure as Error).message } }, 'could not record a refused request in the audit trail')
    }
  })
}, { name: 'auth', dependencies: ['issuer-context', 'audit', 'revocations', 'dpop'] })
