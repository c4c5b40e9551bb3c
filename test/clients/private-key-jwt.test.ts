import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import * as oauth from 'oauth4webapi'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, postForm } from '../support/oauth.js'

const context = setupTestContext()
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

async function keyPair (alg: string, options: { modulusLength?: number, crv?: string } = {}): Promise<{ privateKey: CryptoKey, jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...options })
  return { privateKey, jwk: await exportJWK(publicKey) }
}

async function register (app: App, agentId: string, jwk: JWK, extra: Record<string, unknown> = {}) {
  return await app.inject({ method: 'POST', url: `/api/v1/agents/${agentId}/credentials`, headers: await authHeaders(app), payload: { type: 'private_key_jwt', jwk, ...extra } })
}

/** An agent holding one ES256 key credential. */
async function keyedAgent (app: App) {
  const agent = await createAgent(app, { name: 'keyed agent', scopes: ['weather:read'] })
  const { privateKey, jwk } = await keyPair('ES256')
  const credential = (await register(app, agent.id, jwk)).json()
  return { agent, clientId: agent.client_id as string, privateKey, credential }
}

interface AssertionOptions { alg?: string, typ?: string, kid?: string, iss?: string, sub?: string, aud?: string | string[], iat?: number, exp?: number | null, nbf?: number, jti?: string }

/** A client assertion: valid unless options say otherwise. */
async function assertion (app: App, privateKey: CryptoKey, clientId: string, options: AssertionOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const claims: Record<string, unknown> = { iss: options.iss ?? clientId, sub: options.sub ?? clientId, aud: options.aud ?? app.config.issuer, iat: options.iat ?? now, jti: options.jti ?? randomUUID() }
  if (options.exp !== null) claims.exp = options.exp ?? now + 60
  if (options.nbf !== undefined) claims.nbf = options.nbf
  return await new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'ES256', ...(options.typ === undefined ? {} : { typ: options.typ }), ...(options.kid === undefined ? {} : { kid: options.kid }) }).sign(privateKey)
}

async function withAssertion (app: App, signed: string, url = '/oauth2/token', form: Record<string, string> = { grant_type: 'client_credentials' }, headers: Record<string, string> = {}) {
  return await postForm(app, url, { ...form, client_assertion_type: ASSERTION_TYPE, client_assertion: signed }, headers)
}

function unsigned (claims: Record<string, unknown>, header: Record<string, unknown>, signature = ''): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part(header)}.${part(claims)}.${signature}`
}

describe('registering a private_key_jwt credential', () => {
  it('accepts RSA 2048, P-256, P-384 and Ed25519 public keys, returns the RFC 7638 thumbprint, lists only the public key', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    for (const [alg, options] of [['RS256', { modulusLength: 2048 }], ['ES256', {}], ['ES384', {}], ['EdDSA', { crv: 'Ed25519' }]] as const) {
      const { jwk } = await keyPair(alg, options)
      const response = await register(app, agent.id, { ...jwk, kid: `k-${alg}` }, { expires_at: new Date(Date.now() + 86_400_000).toISOString() })
      expect(response.statusCode, response.body).toBe(201)
      const body = response.json()
      expect(body).toMatchObject({ type: 'private_key_jwt', client_id: agent.client_id, jwk: { ...jwk, kid: `k-${alg}` } })
      expect(body.client_secret).toBeUndefined()
      expect(body.jwk_thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(body.expires_at).not.toBeNull()
    }
    const listed = (await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app) })).json().items
    expect(listed).toHaveLength(4)
    for (const item of listed) {
      expect(Object.keys(item.jwk).every((member) => ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg'].includes(member))).toBe(true)
      expect(item.jwk.d).toBeUndefined()
    }
    const [row] = await ownerSql(app)<Array<{ secret_hash: string | null }>>`select secret_hash from credentials where agent_id = ${agent.id} limit 1`
    expect(row?.secret_hash).toBeNull()
  })

  it('refuses a private JWK, a symmetric one, RSA under 2048 bits, P-521, a missing jwk and a jwk with client_secret: 400 on body/jwk', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const privateJwk = await exportJWK(privateKey)
    // jose will not generate one this small: node:crypto does.
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' })
    const p521 = (await keyPair('ES512')).jwk
    for (const [name, payload] of [
      ['private', { type: 'private_key_jwt', jwk: privateJwk }],
      ['symmetric', { type: 'private_key_jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } }],
      ['small RSA', { type: 'private_key_jwt', jwk: small }],
      ['P-521', { type: 'private_key_jwt', jwk: p521 }],
      ['garbage', { type: 'private_key_jwt', jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' } }],
      ['missing', { type: 'private_key_jwt' }],
      ['secret with jwk', { jwk: p521 }]
    ] as const) {
      const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload })
      expect(response.statusCode, name).toBe(400)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.json().errors[0].location, name).toBe('body/jwk')
      expect(response.body).not.toContain(privateJwk.d)
    }
  })
})

describe('authenticating with private_key_jwt', () => {
  it('gets a token with oauth4webapi, then revokes and introspects with assertions', async () => {
    const app = await context.build()
    const { clientId, privateKey } = await keyedAgent(app)
    const issuer = new URL(app.config.issuer)
    const customFetch: typeof fetch = async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input))
      const response = await app.inject({ method: (init?.method ?? 'GET') as 'GET', url: url.pathname, headers: Object.fromEntries(new Headers(init?.headers).entries()), payload: init?.body === undefined || init.body === null ? undefined : String(init.body) })
      return new Response(response.body, { status: response.statusCode, headers: response.headers as Record<string, string> })
    }
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { [oauth.customFetch]: customFetch, [oauth.allowInsecureRequests]: true }))
    expect(as.token_endpoint_auth_methods_supported).toContain('private_key_jwt')
    expect(as.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'])
    const client: oauth.Client = { client_id: clientId }
    const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.PrivateKeyJwt({ key: privateKey }), new URLSearchParams({ scope: 'weather:read' }), { [oauth.customFetch]: customFetch, [oauth.allowInsecureRequests]: true })
    const token = await oauth.processClientCredentialsResponse(as, client, response)
    expect(token.access_token).toBeTruthy()

    const introspected = await withAssertion(app, await assertion(app, privateKey, clientId), '/oauth2/introspect', { token: token.access_token })
    expect(introspected.statusCode, introspected.body).toBe(200)
    expect(introspected.json()).toMatchObject({ active: true, client_id: clientId })
    const revoked = await withAssertion(app, await assertion(app, privateKey, clientId, { aud: app.config.issuer + '/oauth2/token' }), '/oauth2/revoke', { token: token.access_token })
    expect(revoked.statusCode, revoked.body).toBe(200)
  })

  it('takes typ JWT or client-authentication+jwt, a one-member aud array, a kid naming the thumbprint', async () => {
    const app = await context.build()
    const { clientId, privateKey, credential } = await keyedAgent(app)
    for (const options of [{ typ: 'JWT' }, { typ: 'client-authentication+jwt' }, { aud: [app.config.issuer] }, { kid: credential.jwk_thumbprint }]) {
      const response = await withAssertion(app, await assertion(app, privateKey, clientId, options))
      expect(response.statusCode, JSON.stringify(options) + response.body).toBe(200)
    }
  })

  it('refuses each bad assertion with 401 invalid_client, recorded as auth.failed', async () => {
    const app = await context.build()
    const { agent, clientId, privateKey } = await keyedAgent(app)
    const other = await keyPair('ES256')
    const now = Math.floor(Date.now() / 1000)
    const replayed = await assertion(app, privateKey, clientId)
    expect((await withAssertion(app, replayed)).statusCode).toBe(200)
    const cases: Array<[string, string]> = [
      ['alg none', unsigned({ iss: clientId, sub: clientId, aud: app.config.issuer, exp: now + 60, jti: randomUUID() }, { alg: 'none' })],
      ['alg HS256', await new SignJWT({ iss: clientId, sub: clientId, aud: app.config.issuer, exp: now + 60, jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('a shared secret of enough length!!'))],
      ['another key', await assertion(app, other.privateKey, clientId)],
      ['wrong aud', await assertion(app, privateKey, clientId, { aud: 'https://elsewhere.example' })],
      ['aud array with another member', await assertion(app, privateKey, clientId, { aud: [app.config.issuer, 'https://elsewhere.example'] })],
      ['iss differs from sub', await assertion(app, privateKey, clientId, { iss: 'someone-else' })],
      ['no exp', await assertion(app, privateKey, clientId, { exp: null })],
      ['exp too far', await assertion(app, privateKey, clientId, { exp: now + 600 })],
      ['expired', await assertion(app, privateKey, clientId, { iat: now - 200, exp: now - 100 })],
      ['nbf in the future', await assertion(app, privateKey, clientId, { nbf: now + 120, exp: now + 200 })],
      ['typ at+jwt', await assertion(app, privateKey, clientId, { typ: 'at+jwt' })],
      ['jti holding NUL', await assertion(app, privateKey, clientId, { jti: 'a\u0000b' })],
      ['replayed jti', replayed]
    ]
    for (const [name, signed] of cases) {
      const response = await withAssertion(app, signed)
      expect(response.statusCode, `${name}: ${response.body}`).toBe(401)
      expect(response.json().error, name).toBe('invalid_client')
    }
    const failures = (await auditEvents(app, 'auth.failed')).filter((event) => event.agent_id === agent.id)
    expect(failures).toHaveLength(cases.length)
    expect(new Set(failures.map((event) => event.data.reason))).toEqual(new Set([
      'assertion_alg', 'assertion_signature', 'assertion_aud', 'assertion_iss', 'assertion_exp', 'assertion_lifetime', 'assertion_expired', 'assertion_nbf', 'assertion_typ', 'assertion_jti', 'assertion_replayed'
    ]))
    for (const event of failures) expect(event.data).toMatchObject({ endpoint: 'token', client_id: clientId, method: 'private_key_jwt' })
    // A kid holding NUL names no key and reaches no query.
    const nulKid = await withAssertion(app, await assertion(app, privateKey, clientId, { kid: 'a\u0000b' }))
    expect(nulKid.statusCode).toBe(401)
  })

  it('keeps a jti single use while Redis is down', async () => {
    const app = await context.build({ REDIS_URL: 'redis://127.0.0.1:1' })
    const { clientId, privateKey } = await keyedAgent(app)
    const signed = await assertion(app, privateKey, clientId)
    expect((await withAssertion(app, signed)).statusCode).toBe(200)
    const replay = await withAssertion(app, signed)
    expect(replay.statusCode).toBe(401)
    expect(replay.json().error).toBe('invalid_client')
  })

  it('refuses two authentication methods at once with 400 invalid_request (RFC 6749 §5.2)', async () => {
    const app = await context.build()
    const { agent, clientId, privateKey } = await keyedAgent(app)
    const { client_secret: secret } = await createCredential(app, agent.id)
    const response = await withAssertion(app, await assertion(app, privateKey, clientId), '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) })
    expect(response.statusCode).toBe(400)
    expect(response.json().error).toBe('invalid_request')
  })

  it('a revoked key credential stops working on the next request, on every replica', async (test) => {
    context.requireServerDatabase(test)
    const app = await context.build()
    const replica = await context.build()
    const { agent, clientId, privateKey, credential } = await keyedAgent(app)
    // The replica verifies and caches the key.
    expect((await withAssertion(replica, await assertion(replica, privateKey, clientId))).statusCode).toBe(200)
    expect((await withAssertion(replica, await assertion(replica, privateKey, clientId))).statusCode).toBe(200)
    const revoked = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id}`, headers: await authHeaders(app) })
    expect(revoked.statusCode).toBe(204)
    for (const each of [replica, app]) {
      const response = await withAssertion(each, await assertion(each, privateKey, clientId))
      expect(response.statusCode).toBe(401)
      expect(response.json().error).toBe('invalid_client')
    }
  })

  it('a revoked key credential stops working on the next request on this instance', async () => {
    const app = await context.build()
    const { agent, clientId, privateKey, credential } = await keyedAgent(app)
    expect((await withAssertion(app, await assertion(app, privateKey, clientId))).statusCode).toBe(200)
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id}`, headers: await authHeaders(app) })
    expect((await withAssertion(app, await assertion(app, privateKey, clientId))).statusCode).toBe(401)
  })
})

describe('discovery', () => {
  it('lists private_key_jwt for every endpoint and the assertion signing algorithms', async () => {
    const app = await context.build()
    const metadata = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json()
    for (const member of ['token_endpoint_auth_methods_supported', 'revocation_endpoint_auth_methods_supported', 'introspection_endpoint_auth_methods_supported']) {
      expect(metadata[member]).toContain('private_key_jwt')
    }
    expect(metadata.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'])
  })
})
