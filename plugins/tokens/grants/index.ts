import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TokenRequestBody } from '../../../schemas/tokens.js'
import type { AuthenticatedClient } from '../../clients/public.js'
import { clientCredentials } from './client-credentials.js'
import { JWT_BEARER_GRANT_TYPE, jwtBearer } from './jwt-bearer.js'
import { TOKEN_EXCHANGE_GRANT_TYPE, tokenExchange } from './token-exchange.js'

/** What every grant handler receives: the authenticated client, the request's jti (its issue time), its parameters. */
export interface GrantContext {
  app: FastifyInstance
  request: FastifyRequest
  /** The request's parameters, only those the grant reads and those every request may carry (COMMON_PARAMETERS). */
  body: TokenRequestBody
  /** The client the request authenticated; null only for a grant whose authentication is 'optional'. */
  client: AuthenticatedClient | null
  jti: string
}

/** What a grant decides the token says: the issuer signs, records and counts it. */
export interface Issuance {
  /** The token's subject (sub). */
  subject: string
  scope: string[]
  audience: string | string[]
  /** The credential the token is issued against, when there is one: revoking that credential kills the token. */
  credentialId?: string
  /** Claims of the grant's own (act); never one the issuer sets (cnf included: the issuer binds, from the request's proof). */
  claims?: Record<string, unknown>
  /**
   * The client the token is issued to when the request authenticated none (jwt-bearer: the agent the assertion
   * stands for); its client_id goes into the token, its credential's expiry bounds it.
   */
  client?: AuthenticatedClient
  /** What token.issued records beside what every grant records (jwt-bearer: the external iss and sub). */
  audit?: Record<string, unknown>
  /** The latest exp (epoch seconds) the token may have: a token exchange never outlives its subject token. */
  notAfter?: number
  /** RFC 8693 §2.2.1 issued_token_type, for a grant whose response names it (token exchange). */
  issuedTokenType?: string
}

/** A grant type (RFC 6749 §4, or an extension grant): one file each in this folder. */
export interface Grant {
  /** The request parameters it reads: others are dropped before it runs (RFC 6749 §3.2 ignores unknown ones). */
  parameters: readonly string[]
  /**
   * Whether the token endpoint authenticates the client before the grant runs. A grant that authenticates the
   * request itself (jwt-bearer) says 'optional': a client that presents credentials is authenticated all the same.
   */
  clientAuthentication: 'required' | 'optional'
  handle(context: GrantContext): Promise<Issuance>
}

/** Parameters of every token request, whatever its grant: the grant type and the client authentication methods'. */
export const COMMON_PARAMETERS: readonly string[] = ['grant_type', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type']

/** Grants by the grant_type on the wire: adding one (token exchange, jwt-bearer) is adding a file and a line. */
export const GRANTS: Readonly<Record<string, Grant>> = {
  client_credentials: clientCredentials,
  [JWT_BEARER_GRANT_TYPE]: jwtBearer,
  [TOKEN_EXCHANGE_GRANT_TYPE]: tokenExchange
}

/** The grant registered under `grantType`, if any: an own member only, so `__proto__` or `toString` name none. */
export function grantOf (grantType: string): Grant | undefined {
  return Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined
}

/** Removes from a validated body every parameter the grant does not read. */
export function dropUnreadParameters (body: Record<string, unknown>, grant: Grant): void {
  for (const name of Object.keys(body)) {
    if (!grant.parameters.includes(name) && !COMMON_PARAMETERS.includes(name)) delete body[name]
  }
}
