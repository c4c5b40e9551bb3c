import { setTimeout as sleep } from 'node:timers/promises'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, headerOf, postForm, requestToken } from '../support/oauth.js'
import { GRANTS } from '../../plugins/tokens/grants/index.js'

const context = setupTestContext()
const DEAD_REDIS = 'redis://127.0.0.1:1'

/** An agent with scopes and one credential, through the management API. */
async function agentWithCredential (app: App, scopes = ['weather:read', 'weather:write']) {
  const agent = await createAgent(app, { name: 'token test agent', scopes })
  const credential = await createCredential(app, agent.id)
  return { agent, credential, clientId: credential.client_id as string, secret: credential.client_secret as string }
}

function expectOAuthError (response: Awaited<ReturnType<App['inject']>>, status: number, error: string): void {
  expect(response.statusCode, response.body).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/json/)
  expect(response.headers['cache-control']).toBe('no-store')
  expect(response.json().error).toBe(error)
  expect(typeof response.json().error_description).toBe('string')
}

describe('POST /oauth2/token — client_credentials', () => {
  it('issues an RFC 9068 JWT with client_secret_basic', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    const response = await requestToken(app, clientId, secret)
    expect(response.statusCode, response.body).toBe(200)
    expect(response.headers['cache-control']).toBe('no-store')
    expect(response.headers.pragma).toBe('no-cache')
    const body = response.json()
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 3600, scope: 'weather:read weather:write' })
    expect(headerOf(body.access_token)).toEqual({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.current.kid })
    const claims = claimsOf(body.access_token)
    expect(claims).toMatchObject({ iss: app.config.issuer, sub: agent.id, aud: app.config.issuer, client_id: clientId, scope: 'weather:read weather:write' })
    expect(claims.exp - claims.iat).toBe(3600)
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('accepts client_secret_post', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const response = await postForm(app, '/oauth2/token', { grant_type: 'client_credentials', client_id: clientId, client_secret: secret })
    expect(response.statusCode, response.body).toBe(200)
  })

  it('form-urldecodes Basic credentials, as standard clients encode "-" as %2D', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const encoded = `Basic ${Buffer.from(`${clientId.replace(/-/g, '%2D')}:${secret.replace(/-/g, '%2D')}`).toString('base64')}`
    const response = await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: encoded })
    expect(response.statusCode, response.body).toBe(200)
  })

  it('every jti is unique', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const tokens = await Promise.all(Array.from({ length: 10 }, async () => (await requestToken(app, clientId, secret)).json().access_token as string))
    expect(new Set(tokens.map((token) => claimsOf(token).jti)).size).toBe(10)
  })

  it('narrows scope on request and refuses scopes outside the agent\'s', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const narrowed = await requestToken(app, clientId, secret, { scope: 'weather:read' })
    expect(narrowed.json().scope).toBe('weather:read')
    expect(claimsOf(narrowed.json().access_token).scope).toBe('weather:read')
    expectOAuthError(await requestToken(app, clientId, secret, { scope: 'weather:read agents:write' }), 400, 'invalid_scope')
  })

  it('turns resource (RFC 8707) into aud, and refuses a resource that is not an absolute URI', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'token test agent', resources: ['https://api.example.com/weather', 'https://a.example', 'https://b.example'] })
    const credential = await createCredential(app, agent.id)
    const [clientId, secret] = [credential.client_id as string, credential.client_secret as string]
    const one = await requestToken(app, clientId, secret, { resource: 'https://api.example.com/weather' })
    expect(claimsOf(one.json().access_token).aud).toBe('https://api.example.com/weather')
    const two = await requestToken(app, clientId, secret, { resource: ['https://a.example', 'https://b.example'] })
    expect(claimsOf(two.json().access_token).aud).toEqual(['https://a.example', 'https://b.example'])
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'not-a-uri' }), 400, 'invalid_target')
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'https://a.example/#frag' }), 400, 'invalid_target')
  })

  it('uses TOKEN_AUDIENCE and TOKEN_TTL_SECONDS', async () => {
    const app = await context.build({ TOKEN_AUDIENCE: 'urn:example:apis', TOKEN_TTL_SECONDS: '300' })
    const { clientId, secret } = await agentWithCredential(app)
    const response = await requestToken(app, clientId, secret)
    expect(response.json().expires_in).toBe(300)
    expect(claimsOf(response.json().access_token).aud).toBe('urn:example:apis')
  })
})

describe('POST /oauth2/token — errors (RFC 6749 §5.2)', () => {
  it('no client authentication: 401 invalid_client with WWW-Authenticate', async () => {
    const app = await context.build()
    const response = await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' })
    expectOAuthError(response, 401, 'invalid_client')
    expect(response.headers['www-authenticate']).toMatch(/^Basic /)
  })

  it('both methods at once: invalid_request', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'client_credentials', client_id: clientId, client_secret: secret }, { authorization: basicAuth(clientId, secret) }), 400, 'invalid_request')
  })

  it('wrong secret, unknown client, malformed Basic: 401 invalid_client, recorded as auth.failed', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    expectOAuthError(await requestToken(app, clientId, secret.slice(0, -2) + 'xx'), 401, 'invalid_client')
    expectOAuthError(await requestToken(app, 'agt_nobody', secret), 401, 'invalid_client')
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: 'Basic !!!' }), 401, 'invalid_client')
    const failures = await auditEvents(app, 'auth.failed')
    const wrongSecret = failures.find((event) => event.data.client_id === clientId)
    expect(wrongSecret).toMatchObject({ agent_id: agent.id, actor: 'anonymous', data: { endpoint: 'token', reason: 'wrong_secret' } })
    // A client_id that names no agent is recorded by its fingerprint only: it may be a secret sent in its place.
    expect(failures.find((event) => event.data.reason === 'unknown_client_or_credential')).toMatchObject({ agent_id: null, data: { client_id: null, client_id_fingerprint: expect.stringMatching(/^[0-9a-f]{12}$/) } })
    expect(JSON.stringify(failures)).not.toContain('agt_nobody')
    expect(JSON.stringify(failures)).not.toContain(secret.split('_').slice(1).join('_'))
  })

  it('unsupported or missing grant_type, a JSON body, a repeated parameter: the right error, never a 5xx', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const unsupported = await postForm(app, '/oauth2/token', { grant_type: 'password' }, { authorization: basicAuth(clientId, secret) })
    expectOAuthError(unsupported, 400, 'unsupported_grant_type')
    // The grants this server has, from the registry (as discovery lists them).
    expect(unsupported.json().error_description).toBe(`grant_type password is not supported; supported: ${Object.keys(GRANTS).join(', ')}`)
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'toString' }, { authorization: basicAuth(clientId, secret) }), 400, 'unsupported_grant_type')
    expectOAuthError(await postForm(app, '/oauth2/token', {}, { authorization: basicAuth(clientId, secret) }), 400, 'invalid_request')
    expectOAuthError(await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/json', authorization: basicAuth(clientId, secret) }, payload: { grant_type: 'client_credentials' } }), 400, 'invalid_request')
    expectOAuthError(await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'text/plain' }, payload: 'grant_type=client_credentials' }), 400, 'invalid_request')
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: ['client_credentials', 'client_credentials'] }, { authorization: basicAuth(clientId, secret) }), 400, 'invalid_request')
    expectOAuthError(await app.inject({ method: 'POST', url: '/oauth2/token' }), 400, 'invalid_request')
  })
})

describe('credentials and agent standing', () => {
  it('two live credentials both work (rotation); a revoked one stops at once, even after the cache was warmed', async () => {
    const app = await context.build()
    const { agent, clientId, secret: oldSecret } = await agentWithCredential(app)
    const fresh = await createCredential(app, agent.id)
    expect(fresh.client_id).toBe(clientId)
    expect((await requestToken(app, clientId, oldSecret)).statusCode).toBe(200)
    expect((await requestToken(app, clientId, fresh.client_secret)).statusCode).toBe(200)
    const list = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app) })
    const oldId = list.json().items.find((item: { id: string }) => item.id !== fresh.id).id
    const revoke = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${oldId}`, headers: await authHeaders(app) })
    expect(revoke.statusCode).toBe(204)
    expectOAuthError(await requestToken(app, clientId, oldSecret), 401, 'invalid_client')
    expect((await requestToken(app, clientId, fresh.client_secret)).statusCode).toBe(200)
  })

  it('suspension refuses new tokens on the very next request; reactivation restores; decommissioning ends it', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    const patch = async (status: string) => await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status } })
    expect((await patch('suspended')).statusCode).toBe(200)
    expectOAuthError(await requestToken(app, clientId, secret), 401, 'invalid_client')
    expect((await patch('active')).statusCode).toBe(200)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })).statusCode).toBe(204)
    expectOAuthError(await requestToken(app, clientId, secret), 401, 'invalid_client')
  })

  it('a suspension through one replica is honoured by another on its very next request', async (test) => {
    context.requireServerDatabase(test)
    const first = await context.build()
    const second = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(first)
    expect((await requestToken(second, clientId, secret)).statusCode).toBe(200)
    await first.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(first), payload: { status: 'suspended' } })
    expectOAuthError(await requestToken(second, clientId, secret), 401, 'invalid_client')
  })

  it('an expired credential is refused', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'expiring', scopes: [] })
    const credential = await createCredential(app, agent.id, { expires_at: new Date(Date.now() + 1500).toISOString() })
    expect((await requestToken(app, credential.client_id, credential.client_secret)).statusCode).toBe(200)
    await sleep(1600)
    expectOAuthError(await requestToken(app, credential.client_id, credential.client_secret), 401, 'invalid_client')
  })

  it('the bootstrap admin\'s secret, which names no credential, works', async () => {
    const app = await context.build({ BOOTSTRAP_CLIENT_ID: 'ops-admin', BOOTSTRAP_CLIENT_SECRET: 'a-long-operator-chosen-secret-0123456789' })
    const response = await requestToken(app, 'ops-admin', 'a-long-operator-chosen-secret-0123456789')
    expect(response.statusCode, response.body).toBe(200)
    expect(response.json().scope.split(' ')).toEqual(expect.arrayContaining(['agents:read', 'agents:write', 'audit:read', 'tokens:introspect']))
  })
})

describe('records, counters, and Redis trouble', () => {
  it('records token.issued with jti, scope and aud, and counts the token in the agent\'s month', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    const tokens = [await requestToken(app, clientId, secret), await requestToken(app, clientId, secret, { scope: 'weather:read' })]
    const issued = (await auditEvents(app, 'token.issued')).filter((event) => event.agent_id === agent.id)
    expect(issued.map((event) => event.data.jti)).toEqual(tokens.map((token) => claimsOf(token.json().access_token).jti))
    expect(issued[1]).toMatchObject({ actor: clientId, data: { scope: 'weather:read', aud: app.config.issuer, client_id: clientId } })
    const usage = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage`, headers: await authHeaders(app) })
    expect(usage.json()).toMatchObject({ agent_id: agent.id, tokens_issued: 2 })
  })

  it('issues tokens with Redis down', async () => {
    const app = await context.build({ REDIS_URL: DEAD_REDIS })
    const { clientId, secret } = await agentWithCredential(app)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
  })

  it('never writes a secret or a token to the log or the database', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    const { clientId, secret } = await agentWithCredential(app)
    const token = (await requestToken(app, clientId, secret)).json().access_token as string
    await requestToken(app, clientId, 'wrong-secret-value-123')
    const random = secret.split('_').slice(1).join('_')
    const dump = JSON.stringify(await ownerSql(app)`select * from credentials`) + JSON.stringify(await ownerSql(app)`select * from audit_events`)
    for (const value of [random, token, token.split('.')[2] as string, 'wrong-secret-value-123']) {
      expect(logs.text).not.toContain(value)
      expect(dump).not.toContain(value)
    }
  })
})

describe('rate limits', () => {
  it('RATE_LIMIT_TOKEN_PER_MIN per client: 429 with Retry-After and an OAuth error body', async () => {
    const app = await context.build({ RATE_LIMIT_TOKEN_PER_MIN: '2' })
    const { clientId, secret } = await agentWithCredential(app)
    const other = await agentWithCredential(app)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    const limited = await requestToken(app, clientId, secret)
    expect(limited.statusCode).toBe(429)
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
    expect(limited.json().error).toBe('slow_down')
    expect((await requestToken(app, other.clientId, other.secret)).statusCode).toBe(200)
  })

  it('only an authenticated client spends its per-client quota, counted under rate:/oauth2/token:{client_id}', async () => {
    const app = await context.build({ RATE_LIMIT_TOKEN_PER_MIN: '1' })
    const { clientId, secret } = await agentWithCredential(app)
    // Client authentication runs before the per-client limiter: failures have their own limiter, by address.
    for (let i = 0; i < 2; i++) expectOAuthError(await requestToken(app, clientId, 'wrong'), 401, 'invalid_client')
    expect(await app.store.get(`rate:/oauth2/token:${clientId}`)).toBeNull()
    expect((await requestToken(app, clientId, secret)).statusCode).toBe(200)
    expect(await app.store.get(`rate:/oauth2/token:${clientId}`)).toBe('1')
    expectOAuthError(await requestToken(app, clientId, secret), 429, 'slow_down')
  })

  it('failed authentications per client_id and address are refused before any hash, without locking out other addresses', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' })
    const { clientId, secret } = await agentWithCredential(app)
    for (let i = 0; i < 3; i++) expectOAuthError(await requestToken(app, clientId, 'wrong', {}, '203.0.113.7'), 401, 'invalid_client')
    const blocked = await requestToken(app, clientId, secret, {}, '203.0.113.7')
    expect(blocked.statusCode).toBe(429)
    expect(blocked.headers['retry-after']).toBeDefined()
    expect(blocked.json().error).toBe('slow_down')
    expect((await requestToken(app, clientId, secret, {}, '198.51.100.1')).statusCode).toBe(200)
  })

  it('requests that name no client (no or unreadable credentials) are limited per address too, so they cannot fill the audit trail', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' })
    const { clientId, secret } = await agentWithCredential(app)
    const nameless: Array<Record<string, string>> = [{}, { authorization: 'Basic !!!' }, { authorization: basicAuth('a\u0000b', 'x') }]
    for (const headers of nameless) expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, headers, '203.0.113.9'), 401, 'invalid_client')
    const recorded = (await auditEvents(app, 'auth.failed')).length
    for (const headers of nameless) expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, headers, '203.0.113.9'), 429, 'slow_down')
    expect((await auditEvents(app, 'auth.failed')).length).toBe(recorded)
    // The address's nameless failures lock out no client that names itself, nor other addresses.
    expect((await requestToken(app, clientId, secret, {}, '203.0.113.9')).statusCode).toBe(200)
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, {}, '198.51.100.2'), 401, 'invalid_client')
  })

  it('discovery, JWKS and health are never limited', async () => {
    const app = await context.build({ RATE_LIMIT_API_PER_MIN: '1', RATE_LIMIT_TOKEN_PER_MIN: '1' })
    for (let i = 0; i < 5; i++) {
      for (const url of ['/.well-known/openid-configuration', '/.well-known/jwks.json', '/health/live']) {
        expect((await app.inject({ method: 'GET', url })).statusCode).toBe(200)
      }
    }
  })
})

describe('interoperability', () => {
  it('a token verifies with an independent JWKS client (jose createRemoteJWKSet) through discovery', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    const discovery = await (await fetch(`${address}/.well-known/openid-configuration`)).json() as { jwks_uri: string, issuer: string }
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri.replace(app.config.issuer, address)))
    const token = (await requestToken(app, clientId, secret)).json().access_token as string
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: discovery.issuer, audience: app.config.issuer, typ: 'at+jwt', algorithms: ['RS256'] })
    expect(payload.sub).toBe(agent.id)
    expect(protectedHeader.kid).toBe(app.keys.current.kid)
  })
})

describe('scope changes', () => {
  it('a scope taken away is refused on the very next token request, and tokens carrying it die; an added one is granted', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await agentWithCredential(app)
    const resourceServer = await agentWithCredential(app, ['tokens:introspect'])
    const wide = (await requestToken(app, clientId, secret)).json().access_token
    const patch = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { scopes: ['weather:read'] } })
    expect(patch.statusCode).toBe(200)
    expectOAuthError(await requestToken(app, clientId, secret, { scope: 'weather:write' }), 400, 'invalid_scope')
    expect((await requestToken(app, clientId, secret)).json().scope).toBe('weather:read')
    const introspection = await postForm(app, '/oauth2/introspect', { token: wide }, { authorization: basicAuth(resourceServer.clientId, resourceServer.secret) })
    expect(introspection.json()).toEqual({ active: false })
  })
})
