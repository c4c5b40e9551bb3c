import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { AGENT_MAX_RESOURCES, AGENT_SCOPES_MAX_LENGTH, RESOURCE_MAX_LENGTH } from '../../schemas/agents.js'
import { MAX_TOKEN_LENGTH } from '../../plugins/tokens/bearer.js'
import { signingInput } from '../../plugins/tokens/issuer.js'
import { setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

async function clientOf (app: App, body: Record<string, unknown>) {
  const agent = await createAgent(app, { name: 'least privilege', ...body })
  const credential = await createCredential(app, agent.id)
  return { agent, clientId: credential.client_id as string, secret: credential.client_secret as string }
}

async function isActive (app: App, token: string): Promise<boolean> {
  const resourceServer = await clientOf(app, { scopes: ['tokens:introspect'] })
  const response = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(resourceServer.clientId, resourceServer.secret) })
  expect(response.statusCode, response.body).toBe(200)
  return response.json().active as boolean
}

function expectOAuthError (response: Awaited<ReturnType<App['inject']>>, error: string): void {
  expect(response.statusCode, response.body).toBe(400)
  expect(response.json().error).toBe(error)
}

async function patchAgent (app: App, id: string, payload: Record<string, unknown>) {
  return await app.inject({ method: 'PATCH', url: `/api/v1/agents/${id}`, headers: await authHeaders(app), payload })
}

describe('agent resources (RFC 8707)', () => {
  it('are set on create and patch, and returned', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'r', resources: ['https://api.example.com', 'urn:example:billing'] })
    expect(agent.resources).toEqual(['https://api.example.com', 'urn:example:billing'])
    expect((await createAgent(app, { name: 'none' })).resources).toEqual([])
    const patched = await patchAgent(app, agent.id, { resources: ['https://api.example.com/v2'] })
    expect(patched.statusCode, patched.body).toBe(200)
    expect(patched.json().resources).toEqual(['https://api.example.com/v2'])
    const read = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })
    expect(read.json().resources).toEqual(['https://api.example.com/v2'])
    const [updated] = (await auditEvents(app, 'agent.updated')).filter((event) => event.agent_id === agent.id)
    expect(updated?.data.resources).toEqual({ from: ['https://api.example.com', 'urn:example:billing'], to: ['https://api.example.com/v2'] })
  })

  it.for([
    ['javascript:', 'javascript:alert(1)'],
    ['data:', 'data:text/html,hi'],
    ['a fragment', 'https://api.example.com/#x'],
    ['a relative reference', '/api'],
    ['no host', 'https://'],
    ['a space', 'https://api.example.com/a b'],
    ['a quote', 'https://api.example.com/"'],
    ['non-ASCII', 'https://api.example.com/ä'],
    ['too long', `https://api.example.com/${'a'.repeat(RESOURCE_MAX_LENGTH)}`]
  ])('refuses a resource with %s: 400 problem', async ([, resource]) => {
    const app = await context.build()
    const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: { name: 'bad', resources: [resource] } })
    expect(response.statusCode, response.body).toBe(400)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  })

  it('refuses more resources than allowed, and duplicates', async () => {
    const app = await context.build()
    const many = Array.from({ length: AGENT_MAX_RESOURCES + 1 }, (_, i) => `https://api${i}.example.com`)
    const headers = await authHeaders(app)
    expect((await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'many', resources: many } })).statusCode).toBe(400)
    expect((await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'dup', resources: ['urn:a:b', 'urn:a:b'] } })).statusCode).toBe(400)
  })

  it('a token request names one of the agent\'s resources or the default audience, else invalid_target', async () => {
    const app = await context.build()
    const { clientId, secret } = await clientOf(app, { resources: ['https://api.example.com', 'urn:example:billing'] })
    const one = await requestToken(app, clientId, secret, { resource: 'urn:example:billing' })
    expect(one.statusCode, one.body).toBe(200)
    expect(claimsOf(one.json().access_token).aud).toBe('urn:example:billing')
    const withDefault = await requestToken(app, clientId, secret, { resource: ['https://api.example.com', app.config.tokenAudience] })
    expect(claimsOf(withDefault.json().access_token).aud).toEqual(['https://api.example.com', app.config.tokenAudience])
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'javascript:alert(1)' }), 'invalid_target')
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'https://evil.example' }), 'invalid_target')
    // Matched exactly: a path below an allowed resource is another resource.
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'https://api.example.com/admin' }), 'invalid_target')
    expectOAuthError(await requestToken(app, clientId, secret, { resource: ['https://api.example.com', 'https://evil.example'] }), 'invalid_target')
  })

  it('a resource taken away is refused at once and kills the tokens issued before; an added one is granted', async () => {
    const app = await context.build()
    const { agent, clientId, secret } = await clientOf(app, { resources: ['https://a.example', 'https://b.example'] })
    const token = (await requestToken(app, clientId, secret, { resource: 'https://a.example' })).json().access_token as string
    expect(await isActive(app, token)).toBe(true)
    expect((await patchAgent(app, agent.id, { resources: ['https://b.example', 'https://c.example'] })).statusCode).toBe(200)
    expectOAuthError(await requestToken(app, clientId, secret, { resource: 'https://a.example' }), 'invalid_target')
    expect(await isActive(app, token)).toBe(false)
    const added = await requestToken(app, clientId, secret, { resource: 'https://c.example' })
    expect(added.statusCode, added.body).toBe(200)
    expect(await isActive(app, added.json().access_token)).toBe(true)
  })
})

describe('token size', () => {
  it('the largest token the server issues (every resource, every scope, each as long as allowed) introspects active', async () => {
    const app = await context.build()
    const resources = Array.from({ length: AGENT_MAX_RESOURCES }, (_, i) => `https://api${i}.example.com/`.padEnd(RESOURCE_MAX_LENGTH, 'x'))
    // 128-character scopes (the longest scope-token), and one shorter, to reach the combined bound exactly.
    const scopes = Array.from({ length: 15 }, (_, i) => `s${i}:`.padEnd(128, 'y'))
    scopes.push('last:'.padEnd(AGENT_SCOPES_MAX_LENGTH - scopes.join(' ').length - 1, 'z'))
    expect(scopes.join(' ').length).toBe(AGENT_SCOPES_MAX_LENGTH)
    const { clientId, secret } = await clientOf(app, { scopes, resources })
    const response = await requestToken(app, clientId, secret, { resource: resources })
    expect(response.statusCode, response.body).toBe(200)
    const token = response.json().access_token as string
    expect(claimsOf(token).aud).toEqual(resources)
    expect(token.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH)
    expect(await isActive(app, token)).toBe(true)
    // One more (the default audience) is more than a request may name.
    expect((await requestToken(app, clientId, secret, { resource: [...resources, app.config.tokenAudience] })).statusCode).toBe(400)
  })

  it('refuses scopes longer together than the bound: 400 problem', async () => {
    const app = await context.build()
    const scopes = Array.from({ length: 17 }, (_, i) => `s${i}:`.padEnd(128, 'y'))
    const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: { name: 'wide', scopes } })
    expect(response.statusCode, response.body).toBe(400)
    expect(response.json().detail).toMatch(/at most 2048/)
  })
})

describe('credential expiry', () => {
  it('no token outlives the credential it was issued against, on the first request and from the cache', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'expiring', scopes: ['weather:read'] })
    const expiresAt = new Date(Date.now() + 120_000)
    const credential = await createCredential(app, agent.id, { expires_at: expiresAt.toISOString() })
    for (let i = 0; i < 2; i++) {
      const response = await requestToken(app, credential.client_id, credential.client_secret)
      expect(response.statusCode, response.body).toBe(200)
      const claims = claimsOf(response.json().access_token)
      expect(claims.exp).toBe(Math.floor(expiresAt.getTime() / 1000))
      expect(response.json().expires_in).toBe(claims.exp - claims.iat)
      expect(response.json().expires_in).toBeLessThanOrEqual(120)
    }
  })
})

describe('empty scope', () => {
  it('scope= is treated as omitted (RFC 6749 §3.2): every scope the agent holds', async () => {
    const app = await context.build()
    const { clientId, secret } = await clientOf(app, { scopes: ['weather:read', 'weather:write'] })
    const response = await requestToken(app, clientId, secret, { scope: '' })
    expect(response.statusCode).toBe(200)
    expect(response.json().scope).toBe('weather:read weather:write')
  })

  it('scope of only spaces names no scope-token: invalid_scope', async () => {
    const app = await context.build()
    const { clientId, secret } = await clientOf(app, { scopes: ['weather:read'] })
    expectOAuthError(await requestToken(app, clientId, secret, { scope: '   ' }), 'invalid_scope')
  })

  it('empty resource= and client_secret= beside Basic are omitted, not refused', async () => {
    const app = await context.build()
    const { clientId, secret } = await clientOf(app, { scopes: ['weather:read'] })
    const response = await app.inject({
      method: 'POST',
      url: '/oauth2/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` },
      payload: 'grant_type=client_credentials&resource=&client_secret=&scope='
    })
    expect(response.statusCode).toBe(200)
  })
})

describe('the issuer\'s own bound', () => {
  it('refuses to sign a token longer than its verification accepts, with invalid_request', async () => {
    const app = await context.build()
    const key = app.keys.current.privateKey
    expect(() => signingInput({ alg: 'RS256' }, { scope: 'x'.repeat(MAX_TOKEN_LENGTH) }, key)).toThrow(expect.objectContaining({ error: 'invalid_request' }))
    expect(signingInput({ alg: 'RS256' }, { scope: 'x' }, key)).toMatch(/^[\w-]+\.[\w-]+$/)
  })
})
