import type { KeyObject } from 'node:crypto'
import { SignJWT, type JWTHeaderParameters } from 'jose'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { ADMIN_SCOPES } from '../../src/scopes.js'

export interface MintOptions {
  /** The agent id; a fresh UUIDv7 when absent. */
  sub?: string
  clientId?: string
  /** Space-separated in the token; default: every admin scope. */
  scopes?: string[]
  /** Default: the issuer. */
  aud?: string | string[]
  /** Seconds from now; negative for a token that has already expired. Default 300. */
  expiresIn?: number
  iss?: string
  /** null leaves typ out of the header. */
  typ?: string | null
  jti?: string
  /** Header parameters set on top (kid, alg with a matching key, …). */
  header?: Partial<JWTHeaderParameters>
  /** Signs with this key instead of the app's current private key. */
  key?: KeyObject | Uint8Array
  /** Epoch seconds; default now. */
  issuedAt?: number
  /** Epoch seconds; no nbf when absent. */
  notBefore?: number
  /** Claims set on top (a private claim such as credential_id). */
  claims?: Record<string, unknown>
}

/**
 * An access token shaped exactly like the ones /oauth2/token issues (RFC 9068: the current key's alg and kid,
 * typ at+jwt), signed with the app's current key, so management API tests need no token endpoint.
 */
export async function mintAccessToken (app: App, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const { kid, alg, privateKey } = app.keys.current
  const header: JWTHeaderParameters = { alg, kid, ...options.header }
  if (options.typ !== null) header.typ = options.typ ?? 'at+jwt'
  const jwt = new SignJWT({ client_id: options.clientId ?? 'test-admin', scope: (options.scopes ?? ADMIN_SCOPES).join(' '), ...options.claims })
    .setProtectedHeader(header)
    .setIssuer(options.iss ?? app.config.issuer)
    .setSubject(options.sub ?? newId())
    .setAudience(options.aud ?? app.config.issuer)
    .setIssuedAt(options.issuedAt ?? now)
    .setExpirationTime(now + (options.expiresIn ?? 300))
    .setJti(options.jti ?? newId())
  if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore)
  return await jwt.sign(options.key ?? privateKey)
}

/** The Authorization header of a minted token. */
export async function bearer (app: App, options: MintOptions = {}): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await mintAccessToken(app, options)}` }
}
