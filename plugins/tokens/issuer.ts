import { sign, type KeyObject } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { InvalidDpopProof, InvalidRequest } from '../../src/errors.js'
import { isAgentId, timeOfId } from '../../src/ids.js'
import { monthlyUsageKey, utcMonth } from './usage-keys.js'
import { actorOf } from '../audit/public.js'
import { MAX_TOKEN_LENGTH, type AccessTokenClaims } from './bearer.js'
import type { AuthenticatedClient } from '../clients/public.js'
import type { Issuance } from './grants/index.js'
import type { SigningAlgorithm } from '../infra/keys.js'

/** A successful token response (RFC 6749 §5.1; token_type DPoP for a token bound to a key, RFC 9449 §5). */
export interface TokenResponse {
  access_token: string
  /** N_A for a token exchange's workload JWT, which is no access token (RFC 8693 §2.2.1). */
  token_type: 'Bearer' | 'DPoP' | 'N_A'
  expires_in: number
  scope?: string
  /** RFC 8693 §2.2.1: what a token exchange issued. */
  issued_token_type?: string
}

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * How node's crypto.sign makes each algorithm's JWS signature (RFC 7518 §3, RFC 8037): ES256 wants the raw r||s
 * form, not OpenSSL's DER; Ed25519 hashes internally, so it takes no digest.
 */
const SIGNING: Record<SigningAlgorithm, { digest: string | null, dsaEncoding?: 'ieee-p1363' }> = {
  RS256: { digest: 'sha256' },
  ES256: { digest: 'sha256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { digest: null }
}

/**
 * The JWS signing input of header and payload. A token longer than `maxLength` is refused here, before anything is
 * signed or recorded: the server must never issue a token its own verification refuses as too long.
 */
export function signingInput (header: Record<string, unknown>, payload: Record<string, unknown>, privateKey: KeyObject, maxLength = MAX_TOKEN_LENGTH): string {
  const input = `${base64url(header)}.${base64url(payload)}`
  // An RSA signature is as long as the modulus (base64url of modulusLength / 8 bytes, unpadded); an EC or EdDSA
  // one is at most 132 bytes (ES512), 176 characters.
  const modulusLength = privateKey.asymmetricKeyDetails?.modulusLength
  const length = input.length + 1 + (modulusLength === undefined ? 176 : Math.ceil(modulusLength / 6))
  if (length > maxLength) throw new InvalidRequest(`the token would be ${length} characters, more than the ${maxLength} this server accepts: name fewer resources or scopes`)
  return input
}

/**
 * Signs a JWS signing input with the key's algorithm (the input's header must name it) through node's crypto.sign
 * and a callback, which runs on libuv's thread pool: both cores sign while the event loop keeps serving requests.
 */
export async function signJwt (input: string, key: { alg: SigningAlgorithm, privateKey: KeyObject }): Promise<string> {
  const { digest, dsaEncoding } = SIGNING[key.alg]
  const signature = await new Promise<Buffer>((resolve, reject) => {
    sign(digest, Buffer.from(input), { key: key.privateKey, dsaEncoding }, (error, result) => { error === null ? resolve(result) : reject(error) })
  })
  return `${input}.${signature.toString('base64url')}`
}

/**
 * Signs the claims and records token.issued at once; the event is committed (group commit) before the token is
 * returned, and the client's agent's monthly counter counts it.
 */
async function signAndRecord (
  app: FastifyInstance,
  request: FastifyRequest,
  grant: { grantType: string, client: AuthenticatedClient, jti: string, issuance: Issuance },
  header: Record<string, unknown>,
  claims: Record<string, unknown> & { sub: string, aud: string | string[], exp: number },
  data: Record<string, unknown>
): Promise<string> {
  const { keys } = request.issuerContext
  const { client, jti, issuance } = grant
  const input = signingInput(header, claims, keys.current.privateKey)
  const [token] = await Promise.all([
    signJwt(input, keys.current),
    // Issuing writes nothing else to PostgreSQL: the event is group-committed, and committed before the token is returned.
    app.audit.record({
      type: 'token.issued',
      // A token for a person (sub {issuer}#{sub}) is about the agent that acts for them.
      agentId: isAgentId(claims.sub) ? claims.sub : client.agentId,
      ...actorOf(request, client.clientId),
      data: { ...issuance.audit, jti, aud: claims.aud, client_id: client.clientId, grant_type: grant.grantType, credential_id: issuance.credentialId ?? null, exp: claims.exp, ...data }
    }),
    // The counter lives in Redis only; a Redis failure must not refuse the token.
    app.store.incr(monthlyUsageKey(client.agentId, utcMonth(new Date(timeOfId(jti)))), 400 * 24 * 3600_000)
      .catch((error: Error) => { request.log.warn({ err: { message: error.message } }, 'monthly usage not counted: store unavailable') })
  ])
  app.metrics.tokensIssued.inc({ grant_type: grant.grantType })
  return token
}

/** The longest a workload JWT lives: clouds take it as a web-identity token, to be exchanged at once. */
export const WORKLOAD_JWT_MAX_SECONDS = 3600

/**
 * Issues a workload JWT (RFC 8693 requested_token_type urn:ietf:params:oauth:token-type:jwt): typ JWT, never an
 * access token of this server, for a cloud's web-identity federation (AWS STS AssumeRoleWithWebIdentity, Google
 * workload identity federation, Azure federated credentials) that verifies it through discovery and the JWKS. Its
 * claims are iss, sub (the agent), aud (one audience the agent lists), iat, exp (at most an hour, never past the
 * subject token or the credential) and jti; it is not bound to a DPoP key, which no cloud checks.
 */
export async function issueWorkloadJwt (
  app: FastifyInstance,
  request: FastifyRequest,
  grant: { grantType: string, client: AuthenticatedClient, jti: string, issuance: Issuance }
): Promise<TokenResponse> {
  const { issuer, keys } = request.issuerContext
  const { client, jti, issuance } = grant
  const iat = Math.floor(timeOfId(jti) / 1000)
  const claims = {
    iss: issuer,
    sub: issuance.subject,
    aud: issuance.audience,
    iat,
    exp: Math.min(iat + Math.min(WORKLOAD_JWT_MAX_SECONDS, app.config.tokenTtlSeconds), Math.floor(client.credentialExpiresAt / 1000), issuance.notAfter ?? Infinity),
    jti
  }
  const token = await signAndRecord(app, request, grant, { alg: keys.current.alg, typ: 'JWT', kid: keys.current.kid }, claims, { issued_token_type: issuance.issuedTokenType })
  return { access_token: token, issued_token_type: issuance.issuedTokenType, token_type: 'N_A', expires_in: Math.max(0, claims.exp - iat) }
}

/**
 * Issues the RFC 9068 access token a grant decided on to an authenticated client and records it: the token.issued
 * event is committed (group commit) before the token is returned, and the client's agent's monthly counter counts
 * it once. `jti` is a UUIDv7 made when the request started; its time is the token's issue time (at ms precision).
 * A grant's own claims never replace one set here. Whatever the grant, a request with a verified DPoP proof
 * (`request.dpopProof`) gets a token bound to the proof's key (RFC 9449 §6.1: cnf.jkt, token_type DPoP), and a
 * client whose agent requires DPoP (dpop_bound_access_tokens) gets none without one.
 */
export async function issueAccessToken (
  app: FastifyInstance,
  request: FastifyRequest,
  grant: { grantType: string, client: AuthenticatedClient, jti: string, issuance: Issuance }
): Promise<TokenResponse> {
  const { config } = app
  const { issuer, keys } = request.issuerContext
  const { client, jti, issuance } = grant
  const proof = request.dpopProof
  if (proof === null && client.dpopBoundAccessTokens) throw new InvalidDpopProof('this client must send a DPoP proof (its agent has dpop_bound_access_tokens): tokens are issued to it only bound to a key')
  const issuedAtMs = timeOfId(jti)
  const iat = Math.floor(issuedAtMs / 1000)
  const claims: AccessTokenClaims = {
    ...issuance.claims,
    iss: issuer,
    // Which organization issued it, beside iss: resource servers serving several tenants key on it.
    org_id: request.issuerContext.orgId,
    sub: issuance.subject,
    aud: issuance.audience,
    // No token outlives the credential the client authenticated with.
    // Nor the token it was exchanged from (RFC 8693).
    exp: Math.min(iat + config.tokenTtlSeconds, Math.floor(client.credentialExpiresAt / 1000), issuance.notAfter ?? Infinity),
    iat,
    jti,
    client_id: client.clientId,
    scope: issuance.scope.join(' '),
    // Set even when undefined (JSON leaves it out), so a grant's claims cannot name a credential.
    credential_id: issuance.credentialId,
    // Likewise: only a proof verified for this request binds a token to a key.
    cnf: proof === null ? undefined : { jkt: proof.jkt }
  }
  const token = await signAndRecord(app, request, grant, { alg: keys.current.alg, typ: 'at+jwt', kid: keys.current.kid }, claims,
    { scope: claims.scope, ...(proof === null ? {} : { token_type: 'DPoP', jkt: proof.jkt }) })
  return {
    access_token: token,
    ...(issuance.issuedTokenType === undefined ? {} : { issued_token_type: issuance.issuedTokenType }),
    token_type: proof === null ? 'Bearer' : 'DPoP',
    expires_in: Math.max(0, claims.exp - iat),
    scope: claims.scope
  }
}
