import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { App } from '../../src/app.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm, requestToken } from '../support/oauth.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()

interface Client { agentId: string, clientId: string, secret: string, credentialId: string }

async function client (app: App, scopes: string[] = ['weather:read']): Promise<Client> {
  const agent = await createAgent(app, { name: 'revocation client', scopes })
  const credential = await createCredential(app, agent.id)
  return { agentId: agent.id, clientId: credential.client_id, secret: credential.client_secret, credentialId: credential.id }
}

async function tokenOf (app: App, who: Client): Promise<string> {
  const response = await requestToken(app, who.clientId, who.secret)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

async function introspect (app: App, who: Client, token: string) {
  return await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(who.clientId, who.secret) })
}

async function isActive (app: App, who: Client, token: string): Promise<boolean> {
  const response = await introspect(app, who, token)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().active
}

async function revoke (app: App, who: Client, token: string, hint?: string) {
  return await postForm(app, '/oauth2/revoke', { token, ...(hint === undefined ? {} : { token_type_hint: hint }) }, { authorization: basicAuth(who.clientId, who.secret) })
}

const patchStatus = async (app: App, agentId: string, status: string) =>
  await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers: await authHeaders(app), payload: { status } })

describe('POST /oauth2/introspect (RFC 7662)', () => {
  it('an active token of the client\'s own: its claims, token_type Bearer, no-store', async () => {
    const app = await context.build()
    const me = await client(app)
    const token = await tokenOf(app, me)
    const response = await introspect(app, me, token)
    expect(response.statusCode).toBe(200)
    expect(response.headers['cache-control']).toBe('no-store')
    const claims = claimsOf(token)
    expect(response.json()).toEqual({
      active: true, scope: 'weather:read', client_id: me.clientId, sub: me.agentId, aud: app.config.issuer,
      iss: app.config.issuer, exp: claims.exp, iat: claims.iat, jti: claims.jti, token_type: 'Bearer'
    })
  })

  it('another client\'s token: inactive, unless the caller\'s agent holds tokens:introspect', async () => {
    const app = await context.build()
    const owner = await client(app)
    const stranger = await client(app)
    const resourceServer = await client(app, ['tokens:introspect'])
    const token = await tokenOf(app, owner)
    expect((await introspect(app, stranger, token)).json()).toEqual({ active: false })
    expect(await isActive(app, resourceServer, token)).toBe(true)
  })

  it('anything not currently valid is {"active": false} and nothing more', async () => {
    const app = await context.build()
    const me = await client(app)
    const good = await tokenOf(app, me)
    const [head, body] = good.split('.') as [string, string, string]
    const cases = {
      garbage: 'not-a-token',
      'bad signature': `${head}.${body}.${'A'.repeat(342)}`,
      'another issuer': await mintAccessToken(app, { clientId: me.clientId, iss: 'https://evil.example' }),
      expired: await mintAccessToken(app, { clientId: me.clientId, expiresIn: -60 }),
      'wrong typ': await mintAccessToken(app, { clientId: me.clientId, typ: 'JWT' })
    }
    for (const [name, token] of Object.entries(cases)) {
      const response = await introspect(app, me, token)
      expect(response.statusCode, name).toBe(200)
      expect(response.json(), name).toEqual({ active: false })
    }
  })

  it('a token already verified (and remembered) is inactive once it expires', async () => {
    const app = await context.build()
    const me = await client(app)
    const token = await mintAccessToken(app, { clientId: me.clientId, expiresIn: 2 })
    expect(await isActive(app, me, token)).toBe(true)
    expect(await isActive(app, me, token)).toBe(true)
    // A minute later by the clock: past exp and the 5 s tolerance.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 60_000 })
    try {
      expect(await isActive(app, me, token)).toBe(false)
    } finally {
      vi.useRealTimers()
    }
  })

  it('suspension kills earlier tokens at once; reactivation does not revive them, and a token issued just after lives', async () => {
    const app = await context.build()
    const me = await client(app)
    const resourceServer = await client(app, ['tokens:introspect'])
    const before = await tokenOf(app, me)
    expect((await patchStatus(app, me.agentId, 'suspended')).statusCode).toBe(200)
    expect(await isActive(app, resourceServer, before)).toBe(false)
    expect((await patchStatus(app, me.agentId, 'active')).statusCode).toBe(200)
    const after = await tokenOf(app, me)
    // Same second, most likely: the millisecond issue time carried by the jti decides.
    expect(await isActive(app, resourceServer, after)).toBe(true)
    expect(await isActive(app, resourceServer, before)).toBe(false)
  })

  it('a token issued a few milliseconds before a suspension is dead', async () => {
    const app = await context.build()
    const me = await client(app)
    const resourceServer = await client(app, ['tokens:introspect'])
    const token = await tokenOf(app, me)
    await sleep(2)
    await patchStatus(app, me.agentId, 'suspended')
    expect(await isActive(app, resourceServer, token)).toBe(false)
  })

  it('decommissioning the agent, or revoking the credential a token was issued against, makes it inactive', async () => {
    const app = await context.build()
    const resourceServer = await client(app, ['tokens:introspect'])
    const decommissioned = await client(app)
    const decommissionedToken = await tokenOf(app, decommissioned)
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${decommissioned.agentId}`, headers: await authHeaders(app) })
    expect(await isActive(app, resourceServer, decommissionedToken)).toBe(false)

    const rotated = await client(app)
    const second = await createCredential(app, rotated.agentId)
    const ofFirst = await tokenOf(app, rotated)
    const ofSecond = (await requestToken(app, second.client_id, second.client_secret)).json().access_token
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${rotated.agentId}/credentials/${rotated.credentialId}`, headers: await authHeaders(app) })
    expect(await isActive(app, resourceServer, ofFirst)).toBe(false)
    expect(await isActive(app, resourceServer, ofSecond)).toBe(true)
  })

  it('no client authentication, or a failed one: 401 invalid_client with WWW-Authenticate', async () => {
    const app = await context.build()
    const me = await client(app)
    const token = await tokenOf(app, me)
    for (const headers of [{}, { authorization: basicAuth(me.clientId, 'wrong') }] as Array<Record<string, string>>) {
      const response = await postForm(app, '/oauth2/introspect', { token }, headers)
      expect(response.statusCode).toBe(401)
      expect(response.json().error).toBe('invalid_client')
      expect(response.headers['www-authenticate']).toMatch(/^Basic /)
    }
  })
})

describe('POST /oauth2/revoke (RFC 7009)', () => {
  it('revokes the client\'s own token: introspection and the management API refuse it, and token.revoked is recorded', async () => {
    const app = await context.build()
    const admin = await client(app, ['agents:read'])
    const token = await tokenOf(app, admin)
    expect((await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200)
    const response = await revoke(app, admin, token, 'access_token')
    expect(response.statusCode).toBe(200)
    expect(response.body).toBe('')
    expect(await isActive(app, admin, token)).toBe(false)
    const refused = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })
    expect(refused.statusCode).toBe(401)
    expect(refused.headers['www-authenticate']).toContain('invalid_token')
    const [event] = (await auditEvents(app, 'token.revoked')).filter((e) => e.data.jti === claimsOf(token).jti)
    expect(event).toMatchObject({ agent_id: admin.agentId, actor: admin.clientId, data: { revoked_by: admin.clientId } })
    const rows = await ownerSql(app)`select jti, agent_id, reason from token_revocations where jti = ${claimsOf(token).jti}`
    expect(rows).toHaveLength(1)
  })

  it('answers 200 for unknown, malformed, expired and already revoked tokens, with any hint', async () => {
    const app = await context.build()
    const me = await client(app)
    const token = await tokenOf(app, me)
    expect((await revoke(app, me, token)).statusCode).toBe(200)
    for (const presented of [token, 'garbage', await mintAccessToken(app, { clientId: me.clientId, expiresIn: -10 })]) {
      expect((await revoke(app, me, presented, 'refresh_token')).statusCode).toBe(200)
    }
    expect((await auditEvents(app, 'token.revoked')).filter((e) => e.data.jti === claimsOf(token).jti)).toHaveLength(1)
  })

  it('another client\'s token is refused; a client whose agent may hold agents:write revokes any', async () => {
    const app = await context.build()
    const owner = await client(app)
    const stranger = await client(app)
    const admin = await client(app, ['agents:write'])
    const token = await tokenOf(app, owner)
    const refused = await revoke(app, stranger, token)
    expect(refused.statusCode).toBe(400)
    expect(refused.json().error).toBe('invalid_request')
    expect(await isActive(app, owner, token)).toBe(true)
    expect((await revoke(app, admin, token)).statusCode).toBe(200)
    expect(await isActive(app, owner, token)).toBe(false)
  })

  it('no client authentication, or a failed one: 401 invalid_client', async () => {
    const app = await context.build()
    const me = await client(app)
    const token = await tokenOf(app, me)
    expect((await postForm(app, '/oauth2/revoke', { token })).statusCode).toBe(401)
    expect((await postForm(app, '/oauth2/revoke', { token }, { authorization: basicAuth(me.clientId, 'nope') })).statusCode).toBe(401)
    expect(await isActive(app, me, token)).toBe(true)
  })

  it('two replicas: a revocation through one is honoured by the other at once', async (test) => {
    context.requireServerDatabase(test)
    const first = await context.build()
    const second = await context.build()
    const me = await client(first)
    const token = await tokenOf(first, me)
    expect(await isActive(second, me, token)).toBe(true)
    await revoke(first, me, token)
    expect(await isActive(second, me, token)).toBe(false)
  })

  it('discovery names both endpoints and their authentication methods', async () => {
    const app = await context.build()
    const metadata = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json()
    expect(metadata).toMatchObject({
      revocation_endpoint: `${app.config.issuer}/oauth2/revoke`,
      introspection_endpoint: `${app.config.issuer}/oauth2/introspect`,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt']
    })
  })
})

describe.skipIf(!hasRedisServer)('with a Redis of the test\'s own that loses everything or goes away', () => {
  let redis: OwnRedisServer
  beforeAll(async () => { redis = await OwnRedisServer.start() })
  afterAll(async () => { await redis.stop() })

  it('FLUSHALL between revoke and introspect: still revoked', async () => {
    const app = await context.build({ REDIS_URL: redis.url })
    const me = await client(app)
    const token = await tokenOf(app, me)
    await revoke(app, me, token)
    const raw = createClient({ url: redis.url })
    await raw.connect()
    await raw.flushAll()
    await raw.close()
    expect(await isActive(app, me, token)).toBe(false)
    expect(await isActive(app, me, await tokenOf(app, me))).toBe(true)
  })

  it('Redis killed: tokens, revocation and introspection keep working from PostgreSQL; restarted, it is used again', async () => {
    const app = await context.build({ REDIS_URL: redis.url })
    const me = await client(app)
    const early = await tokenOf(app, me)
    await redis.stop()
    const ready = await app.inject({ method: 'GET', url: '/health/ready' })
    expect(ready.statusCode).toBe(503)
    expect(ready.json().checks.redis.status).toBe('down')
    const during = await tokenOf(app, me)
    expect((await revoke(app, me, early)).statusCode).toBe(200)
    expect(await isActive(app, me, early)).toBe(false)
    expect(await isActive(app, me, during)).toBe(true)
    await redis.start()
    await expect.poll(async () => (await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, { timeout: 10_000, interval: 200 }).toBe(200)
    const raw = createClient({ url: redis.url })
    await raw.connect()
    await expect.poll(async () => await raw.get(`revoked:${claimsOf(early).jti}`), { timeout: 10_000, interval: 200 }).toBe('1')
    await raw.close()
    expect(await isActive(app, me, early)).toBe(false)
    expect(await isActive(app, me, during)).toBe(true)
  })
})
