import { inOrganization } from '../../src/database.js'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from 'jose'
import { InvalidRequest } from '../../src/errors.js'
import { AdminScope, parseScope } from '../../src/scopes.js'
import type { Introspection } from '../../schemas/revocation.js'
import { findAgent, refusalOf } from '../clients/public.js'
import { actorOf } from '../audit/public.js'
import { refused, type AccessTokenClaims } from '../tokens/public.js'
import type { AuthenticatedClient } from '../clients/public.js'
import type { IssuerContext } from '../tokens/public.js'
import { tokenRefOf } from './state.js'

export type VerifiedToken = { valid: true, claims: AccessTokenClaims } | { valid: false, expired: boolean }

/** Verifies a presented token as the issuer issued it (signature by a published key under its own algorithm, typ, iss, exp). */
async function verify (app: FastifyInstance, issuer: IssuerContext, token: string): Promise<VerifiedToken> {
  try {
    return { valid: true, claims: await app.verifyAccessToken(token, issuer) }
  } catch (error) {
    return { valid: false, expired: error instanceof errors.JWTExpired }
  }
}

/** Revocation (RFC 7009) and introspection (RFC 7662) over the dual store. */
export function revocationService (app: FastifyInstance) {
  return {
    /** Verifies a presented token as the issuer issued it; never rejects for a token that fails to verify. */
    async verify (issuer: IssuerContext, token: string): Promise<VerifiedToken> {
      return await verify(app, issuer, token)
    },

    /**
     * Revokes a token issued to the client, or, for a client whose agent may hold agents:write, a token of an agent
     * whose management scopes are a subset of its own (the privilege rules of plugins/clients/authorization.ts).
     * Anything else is 400 invalid_request, as RFC 7009 §2.1 refuses a token not issued to the client, and authz.denied.
     * Unknown, malformed, expired or already revoked tokens are a success that changes nothing (RFC 7009 §2.2).
     */
    async revoke (request: FastifyRequest, client: AuthenticatedClient, token: string): Promise<void> {
      const verified = await verify(app, request.issuerContext, token)
      if (!verified.valid) return
      const { claims } = verified
      const ref = tokenRefOf(request.issuerContext.orgId, claims)
      if (claims.client_id !== client.clientId) {
        // The token's agent as it is now (for a token held for a person, the agent acting); were it gone, the
        // scopes the token carries.
        const owner = await inOrganization(app.sql, request.issuerContext.orgId, async (tx) => await findAgent(tx, ref.agentId)) ?? { id: ref.agentId, client_id: claims.client_id, scopes: parseScope(claims.scope), status: 'active' as const }
        const caller = { orgId: request.issuerContext.orgId, agentId: client.agentId, clientId: client.clientId, scopes: new Set(client.scopes) }
        const refusal = refusalOf(app.config, caller, { kind: 'token.revoke', target: owner })
        if (refusal !== undefined) throw refused(new InvalidRequest(`the token was not issued to this client: ${refusal.detail}`), refusal.denial)
      }
      if (await app.revocations.isRevoked(ref)) return
      await app.revocations.revokeToken(ref, claims.client_id === client.clientId ? 'revoked by its client' : `revoked by ${client.clientId}`, async (tx) => {
        await app.audit.recordIn(tx, {
          type: 'token.revoked',
          agentId: ref.agentId,
          ...actorOf(request, client.clientId),
          data: { jti: claims.jti, client_id: claims.client_id, revoked_by: client.clientId, exp: claims.exp }
        })
      })
      app.metrics.revocations.inc({ kind: 'token' })
    },

    /**
     * Whether the token is active now, and its claims if so, for the client allowed to see them: its own
     * tokens, or any token for a client whose agent holds tokens:introspect. Anything else: `{ active: false }`.
     * Only tokens of the issuer the request speaks to are active: the token was verified (`verify`) against it
     * while the client authenticated.
     */
    async introspect (orgId: string, client: AuthenticatedClient, verified: VerifiedToken): Promise<Introspection> {
      if (!verified.valid) return { active: false }
      const { claims } = verified
      if (claims.client_id !== client.clientId && !client.scopes.includes(AdminScope.TokensIntrospect)) return { active: false }
      if (await app.revocations.isRevoked(tokenRefOf(orgId, claims))) return { active: false }
      return {
        active: true,
        scope: claims.scope,
        client_id: claims.client_id,
        sub: claims.sub,
        aud: claims.aud,
        iss: claims.iss,
        exp: claims.exp,
        iat: claims.iat,
        jti: claims.jti,
        // RFC 9449 §6.2: a bound token says so, and names its key, so a resource server can check the proof.
        token_type: claims.cnf === undefined ? 'Bearer' : 'DPoP',
        cnf: claims.cnf,
        // RFC 8693 §4.1: who acts for sub, the whole chain.
        act: claims.act
      }
    }
  }
}
