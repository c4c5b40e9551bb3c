import { SignJWT } from 'jose'
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
  typ?: string
  jti?: string
}

/**
 * An access token shaped exactly like the ones /oauth2/token issues (RFC 9068: RS256, typ at+jwt, kid of the
 * current key), signed with the app's current key, so management API tests need no token endpoint.
 */
export async function mintAccessToken (app: App, options: MintOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const { kid, privateKey } = app.keys.current
  return await new SignJWT({ client_id: options.clientId ?? 'test-admin', scope: (options.scopes ?? ADMIN_SCOPES).join(' ') })
    .setProtectedHeader({ alg: 'RS256', typ: options.typ ?? 'at+jwt', kid })
    .setIssuer(options.iss ?? app.config.issuer)
    .setSubject(options.sub ?? newId())
    .setAudience(options.aud ?? app.config.issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresIn ?? 300))
    .setJti(options.jti ?? newId())
    .sign(privateKey)
}

/** The Authorization header of a minted token. */
export async function bearer (app: App, options: MintOptions = {}): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await mintAccessToken(app, options)}` }
}
