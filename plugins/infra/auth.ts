import type { FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { errors, jwtVerify, type JWTPayload } from 'jose'
import { ProblemError } from '../../src/errors.js'
import { actorOf } from './audit.js'
import { tokenRefOf } from './revocations.js'

/** The verified caller of a management API request. */
export interface Principal {
  agentId: string
  clientId: string
  scopes: Set<string>
  jti: string
  /** Issue time in epoch ms (from the time-ordered jti when it carries one). */
  issuedAtMs: number
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
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Verifies an access token issued by this server: signature by a published key, RS256, typ, iss, exp, nbf. */
    verifyAccessToken(token: string, options?: { audience?: string }): Promise<AccessTokenClaims>
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

// Our tokens are a few hundred bytes; anything far larger is refused before it is parsed.
const MAX_TOKEN_LENGTH = 8192
const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/

/** RFC 6750 §3: a 401 or 403 that tells the client what went wrong in WWW-Authenticate. */
function bearerError (status: 401 | 403, error: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | undefined, detail: string, scope?: string): ProblemError {
  const params = ['realm="agentidp"']
  if (error !== undefined) params.push(`error="${error}"`, `error_description="${detail.replace(/"/g, "'")}"`)
  if (scope !== undefined) params.push(`scope="${scope}"`)
  return new ProblemError(status, status === 401 ? 'Unauthorized' : 'Forbidden', detail, { 'www-authenticate': `Bearer ${params.join(', ')}` })
}

/**
 * Management API authentication: Bearer access tokens issued by this server, verified locally against the
 * published keys, with scopes per route. Failures are recorded as auth.failed.
 */
export default fp(async (app) => {
  const { config, keys } = app

  app.decorate('verifyAccessToken', async (token: string, options: { audience?: string } = {}) => {
    if (token.length > MAX_TOKEN_LENGTH) throw new errors.JWTInvalid('token too long')
    const { payload } = await jwtVerify(token, (header) => {
      const key = header.kid === undefined ? undefined : keys.byKid.get(header.kid)
      if (key === undefined) throw new errors.JWKSNoMatchingKey()
      return key.key
    }, {
      algorithms: ['RS256'],
      issuer: config.issuer,
      typ: 'at+jwt',
      audience: options.audience,
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id', 'scope'],
      clockTolerance: 5
    })
    return payload as AccessTokenClaims
  })

  async function authenticate (request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization
    if (header === undefined) throw bearerError(401, undefined, 'a Bearer access token is required')
    const match = BEARER.exec(header)
    if (match === null) throw bearerError(401, 'invalid_request', 'the Authorization header must be "Bearer <access token>"')
    let claims: AccessTokenClaims
    try {
      // Management API tokens must be meant for this server: aud includes the issuer.
      claims = await app.verifyAccessToken(match[1] as string, { audience: config.issuer })
    } catch (error) {
      const reason = error instanceof errors.JWTExpired ? 'the access token has expired' : 'the access token is invalid'
      throw bearerError(401, 'invalid_token', reason)
    }
    const token = tokenRefOf(claims)
    // Revoked tokens, and tokens of an agent suspended or decommissioned (or a credential revoked) since.
    if (await app.revocations.isRevoked(token)) throw bearerError(401, 'invalid_token', 'the access token has been revoked')
    return {
      agentId: claims.sub,
      clientId: claims.client_id,
      scopes: new Set(claims.scope.split(' ').filter(Boolean)),
      jti: claims.jti,
      issuedAtMs: token.issuedAtMs
    }
  }

  app.decorate('requireScopes', (...scopes: string[]): preValidationAsyncHookHandler => {
    return async function requireScopes (request: FastifyRequest, _reply: FastifyReply) {
      let principal: Principal
      try {
        principal = await authenticate(request)
      } catch (error) {
        await app.audit.record({ type: 'auth.failed', ...actorOf(request), data: { endpoint: request.routeOptions.url, method: request.method, reason: (error as ProblemError).detail ?? 'invalid token' } })
        throw error
      }
      request.principal = principal
      const missing = scopes.filter((scope) => !principal.scopes.has(scope))
      if (missing.length > 0) throw bearerError(403, 'insufficient_scope', `this operation needs the scope ${missing.join(' ')}`, scopes.join(' '))
    }
  })
}, { name: 'auth', dependencies: ['config', 'keys', 'audit', 'revocations'] })
