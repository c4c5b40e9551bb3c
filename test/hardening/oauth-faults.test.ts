import { generateKeyPairSync } from 'node:crypto'
import { SignJWT, UnsecuredJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { newId } from '../../src/ids.js'
import { OUTAGE_POOLS, setupTestContext } from '../helper.js'
import { bounded } from '../support/fuzz.js'
import { createAgent, createCredential } from '../support/management.js'
import { basicAuth, postForm, requestToken } from '../support/oauth.js'
import { TcpProxy } from '../support/tcp-proxy.js'

const context = setupTestContext()

describe('the OAuth endpoints when PostgreSQL goes away', () => {
  it.for(OUTAGE_POOLS)('%s: the token endpoint answers 503 temporarily_unavailable (RFC 6749 JSON, no-store), then recovers by itself', async ([, env], test) => {
    context.skipRepeatedPool(env, test)
    const setup = await context.build()
    const agent = await createAgent(setup, { name: 'outage', scopes: [] })
    const credential = await createCredential(setup, agent.id)
    const cold = await createCredential(setup, agent.id)
    await setup.close()
    const proxy = await TcpProxy.start(context.database.url)
    try {
      const app = await context.build({ DATABASE_URL: proxy.through(context.database.url), ...env })
      expect((await requestToken(app, credential.client_id, credential.client_secret)).statusCode).toBe(200)
      proxy.cut()
      // Cold (never verified: needs PostgreSQL) and warm (cached; its audit event still needs PostgreSQL).
      for (const who of [cold, credential]) {
        const response = await bounded(requestToken(app, who.client_id, who.client_secret), 12_000, 'token during outage')
        expect(response.statusCode, response.body).toBe(503)
        expect(response.json().error).toBe('temporarily_unavailable')
        expect(response.headers['cache-control']).toBe('no-store')
        expect(response.headers['retry-after']).toBeDefined()
      }
      proxy.restore()
      await expect.poll(async () => (await requestToken(app, credential.client_id, credential.client_secret)).statusCode, { timeout: 20_000, interval: 300 }).toBe(200)
    } finally {
      await proxy.close()
    }
  })
})

describe('hostile tokens at introspection: all {"active": false}', () => {
  it('alg none, HS256 with the public key, another key, a kid that is a path, oversized', async () => {
    const app = await context.build()
    const resourceServer = await createAgent(app, { name: 'rs', scopes: ['tokens:introspect'] })
    const rs = await createCredential(app, resourceServer.id)
    const claims = { client_id: rs.client_id, scope: 'tokens:introspect' }
    const base = (jwt: SignJWT) => jwt.setIssuer(app.config.issuer).setAudience(app.config.issuer).setSubject(resourceServer.id).setJti(newId()).setIssuedAt().setExpirationTime('5m')
    const publicPem = app.keys.current.key.export({ type: 'spki', format: 'pem' }) as string
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const hostile = {
      'alg none': new UnsecuredJWT(claims).setIssuer(app.config.issuer).setAudience(app.config.issuer).setSubject(resourceServer.id).setJti(newId()).setIssuedAt().setExpirationTime('5m').encode(),
      'HS256 with the public key': await base(new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: app.keys.current.kid })).sign(new TextEncoder().encode(publicPem)),
      'another key, our kid': await base(new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.current.kid })).sign(other.privateKey),
      'a kid that is a path': await base(new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: '../../etc/passwd' })).sign(other.privateKey),
      '10 KB, past the longest token this server issues': 'a'.repeat(10_000)
    }
    for (const [name, token] of Object.entries(hostile)) {
      const response = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(rs.client_id, rs.client_secret) })
      expect(response.statusCode, name).toBe(200)
      expect(response.json(), name).toEqual({ active: false })
    }
    const huge = await postForm(app, '/oauth2/introspect', { token: 'a'.repeat(100_000) }, { authorization: basicAuth(rs.client_id, rs.client_secret) })
    expect(huge.statusCode).toBe(413)
    expect(huge.json().error).toBe('invalid_request')
  })
})
