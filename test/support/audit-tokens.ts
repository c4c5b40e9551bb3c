import { SignJWT } from 'jose'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'

/** A management API access token signed with the app's current key, as /oauth2/token would issue it. */
export async function mintAccessToken (app: App, scope: string, subject = newId(), clientId = 'audit-test-client'): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return await new SignJWT({ client_id: clientId, scope, jti: newId() })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.current.kid })
    .setIssuer(app.config.issuer)
    .setSubject(subject)
    .setAudience(app.config.issuer)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(app.keys.current.privateKey)
}
