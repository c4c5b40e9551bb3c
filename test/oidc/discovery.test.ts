import { generateKeyPairSync } from 'node:crypto'
import { SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { newId } from '../../src/ids.js'
import { setupTestContext } from '../helper.js'

const context = setupTestContext()

describe('discovery (OIDC Discovery 1.0, RFC 8414)', () => {
  it.each(['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server'])('%s names what this server serves, with the issuer verbatim', async (path) => {
    const app = await context.build({ ISSUER: 'https://idp.example.com/agents' })
    const response = await app.inject({ method: 'GET', url: path })
    expect(response.statusCode).toBe(200)
    expect(response.headers['cache-control']).toMatch(/max-age=\d+/)
    const metadata = response.json()
    expect(metadata).toMatchObject({
      issuer: 'https://idp.example.com/agents',
      token_endpoint: 'https://idp.example.com/agents/oauth2/token',
      jwks_uri: 'https://idp.example.com/agents/.well-known/jwks.json',
      grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'urn:ietf:params:oauth:grant-type:token-exchange'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256']
    })
    expect(metadata.scopes_supported).toEqual(expect.arrayContaining(['agents:read', 'agents:write', 'audit:read']))
    expect(metadata.authorization_endpoint).toBeUndefined()
  })

  it('advertises only endpoints that answer', async () => {
    const app = await context.build()
    const metadata = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json()
    for (const [member, value] of Object.entries(metadata)) {
      if (!member.endsWith('_endpoint')) continue
      const path = new URL(value as string).pathname
      const response = await app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '' })
      expect(response.statusCode, `${member} ${path}`).not.toBe(404)
    }
  })
})

describe('JWKS (RFC 7517)', () => {
  it('publishes public keys only, each with kid (RFC 7638 thumbprint), use sig and alg RS256', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['cache-control']).toMatch(/public/)
    const { keys } = response.json()
    expect(keys).toHaveLength(1)
    expect(keys[0]).toEqual({ kty: 'RSA', kid: app.keys.current.kid, use: 'sig', alg: 'RS256', n: expect.any(String), e: 'AQAB' })
    for (const privateMember of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(keys[0][privateMember]).toBeUndefined()
  })

  it('key rotation: previous public keys stay published, and tokens they signed keep working', async () => {
    const previous = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
    const app = await context.build({ JWT_PREVIOUS_PUBLIC_KEYS: previous.publicKey.replace(/\n/g, '\\n') })
    const { keys } = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    expect(keys).toHaveLength(2)
    const previousKid = keys.find((key: { kid: string }) => key.kid !== app.keys.current.kid).kid
    const oldToken = await new SignJWT({ client_id: 'old-admin', scope: 'agents:read' })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: previousKid })
      .setIssuer(app.config.issuer).setAudience(app.config.issuer).setSubject(newId()).setJti(newId())
      .setIssuedAt().setExpirationTime('5m')
      .sign((await import('node:crypto')).createPrivateKey(previous.privateKey))
    const response = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${oldToken}` } })
    expect(response.statusCode, response.body).toBe(200)
  })
})
