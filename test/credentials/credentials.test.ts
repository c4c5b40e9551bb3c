import { describe, expect, it } from 'vitest'
import { credentialChangedKey } from '../../plugins/revocation/keys.js'
import { AdminScope } from '../../src/scopes.js'
import { credentialIdOfSecret, verifySecret } from '../../src/secrets.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'

const context = setupTestContext()

const UNKNOWN_ID = '01900000-0000-7000-8000-000000000000'

describe('POST /api/v1/agents/{id}/credentials', () => {
  it('issues a server-generated secret once, stores only its argon2id hash and records credential.created', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app, [AdminScope.AgentsWrite], 'ops-admin'), payload: {} })
    expect(response.statusCode).toBe(201)
    expect(response.headers['cache-control']).toBe('no-store')
    const credential = response.json()
    expect(Object.keys(credential).sort()).toEqual(['client_id', 'client_secret', 'created_at', 'expires_at', 'id', 'type'])
    expect(credential).toMatchObject({ type: 'client_secret', client_id: agent.client_id, expires_at: null })
    expect(response.headers.location).toBe(`/api/v1/agents/${agent.id}/credentials/${credential.id}`)

    // The secret names its credential and carries 256 random bits in a form-urlencoding-safe alphabet.
    const secret: string = credential.client_secret
    expect(secret).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(credentialIdOfSecret(secret)).toBe(credential.id)
    expect(Buffer.from(secret.split('_').slice(1).join('_'), 'base64url')).toHaveLength(32)

    const [row] = await ownerSql(app)<Array<Record<string, unknown>>>`select * from credentials where id = ${credential.id}`
    expect(row?.secret_hash).toMatch(/^\$argon2id\$/)
    expect(await verifySecret(row?.secret_hash as string, secret)).toBe(true)
    expect(JSON.stringify(row)).not.toContain(secret.slice(33))

    const [event] = (await auditEvents(app, 'credential.created')).filter((e) => e.agent_id === agent.id)
    expect(event).toMatchObject({ actor: 'ops-admin', data: { credential_id: credential.id, expires_at: null } })
  })

  it('accepts a request with no body at all', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app) })
    expect(response.statusCode).toBe(201)
    expect(response.json().expires_at).toBeNull()
  })

  it('takes type client_secret, and refuses any other type with a 400 naming body/type', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    expect(await createCredential(app, agent.id, { type: 'client_secret' })).toMatchObject({ type: 'client_secret' })
    const headers = await authHeaders(app)
    for (const type of ['client_assertion', '', 'CLIENT_SECRET']) {
      const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers, payload: { type } })
      expect(response.statusCode, type).toBe(400)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.json().errors[0].location).toMatch(/^body\/type/)
    }
  })

  it('keeps an expiry in the future and refuses one in the past or malformed with a 400', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const expiresAt = new Date(Date.now() + 86_400_000)
    const credential = await createCredential(app, agent.id, { expires_at: expiresAt.toISOString() })
    expect(credential.expires_at).toBe(expiresAt.toISOString())
    const headers = await authHeaders(app)
    for (const expires_at of [new Date(Date.now() - 1000).toISOString(), 'tomorrow', '2030-02-30T00:00:00Z']) {
      const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers, payload: { expires_at } })
      expect(response.statusCode, expires_at).toBe(400)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.json().errors[0].location).toBe('body/expires_at')
    }
  })

  it('issues to a suspended agent, refuses a decommissioned one with a 409 and an unknown one with a 404', async () => {
    const app = await context.build()
    const headers = await authHeaders(app)
    const suspended = await createAgent(app)
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${suspended.id}`, headers, payload: { status: 'suspended' } })
    expect((await app.inject({ method: 'POST', url: `/api/v1/agents/${suspended.id}/credentials`, headers, payload: {} })).statusCode).toBe(201)

    const retired = await createAgent(app)
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${retired.id}`, headers })
    const conflict = await app.inject({ method: 'POST', url: `/api/v1/agents/${retired.id}/credentials`, headers, payload: {} })
    expect(conflict.statusCode).toBe(409)
    expect(conflict.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect((await ownerSql(app)`select 1 from credentials where agent_id = ${retired.id}`).length).toBe(0)

    expect((await app.inject({ method: 'POST', url: `/api/v1/agents/${UNKNOWN_ID}/credentials`, headers, payload: {} })).statusCode).toBe(404)
  })
})

describe('GET /api/v1/agents/{id}/credentials', () => {
  it('lists live and revoked credentials, two live at once for rotation, never a secret or a hash', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const old = await createCredential(app, agent.id)
    const rotated = await createCredential(app, agent.id)
    const headers = await authHeaders(app, [AdminScope.AgentsRead])

    const both = (await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers })).json()
    expect(both.items.map((item: { id: string }) => item.id)).toEqual([old.id, rotated.id])
    expect(both.items.every((item: { revoked_at: unknown }) => item.revoked_at === null)).toBe(true)

    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${old.id}`, headers: await authHeaders(app) })
    const response = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers })
    expect(response.statusCode).toBe(200)
    const { items } = response.json()
    expect(Object.keys(items[0]).sort()).toEqual(['client_id', 'created_at', 'expires_at', 'id', 'last_used_at', 'revoked_at', 'type'])
    expect(items[0]).toMatchObject({ id: old.id, type: 'client_secret', client_id: agent.client_id, revoked_at: expect.any(String) })
    expect(items[1]).toMatchObject({ id: rotated.id, revoked_at: null })
    expect(response.body).not.toContain('argon2')
    expect(response.body).not.toContain(rotated.client_secret)
  })

  it('404s an unknown agent and 403s a caller without agents:read', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${UNKNOWN_ID}/credentials`, headers: await authHeaders(app) })).statusCode).toBe(404)
    const forbidden = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app, [AdminScope.AgentsWrite]) })
    expect(forbidden.statusCode).toBe(403)
    expect(forbidden.headers['www-authenticate']).toMatch(/error="insufficient_scope"/)
  })
})

describe('DELETE /api/v1/agents/{id}/credentials/{credential_id}', () => {
  it('revokes at once, publishes the revocation for every replica and records credential.revoked once', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const credential = await createCredential(app, agent.id)
    const headers = await authHeaders(app, [AdminScope.AgentsWrite], 'ops-admin')
    const url = `/api/v1/agents/${agent.id}/credentials/${credential.id}`

    const before = Date.now()
    const response = await app.inject({ method: 'DELETE', url, headers })
    expect(response.statusCode).toBe(204)
    const [row] = await ownerSql(app)<Array<{ revoked_at: Date | null }>>`select revoked_at from credentials where id = ${credential.id}`
    expect(row?.revoked_at).toBeInstanceOf(Date)
    expect(Number(await app.store.get(credentialChangedKey(credential.id)))).toBeGreaterThanOrEqual(before)

    // Idempotent: the second DELETE is a 204 that changes and records nothing.
    expect((await app.inject({ method: 'DELETE', url, headers })).statusCode).toBe(204)
    const [again] = await ownerSql(app)<Array<{ revoked_at: Date | null }>>`select revoked_at from credentials where id = ${credential.id}`
    expect(again?.revoked_at?.getTime()).toBe(row?.revoked_at?.getTime())
    const events = (await auditEvents(app, 'credential.revoked')).filter((e) => e.agent_id === agent.id)
    expect(events).toEqual([{ type: 'credential.revoked', agent_id: agent.id, actor: 'ops-admin', data: { credential_id: credential.id, reason: 'revoked' } }])
  })

  it("404s an unknown credential and another agent's credential, leaving the latter live", async () => {
    const app = await context.build()
    const mine = await createAgent(app)
    const theirs = await createAgent(app)
    const theirCredential = await createCredential(app, theirs.id)
    const headers = await authHeaders(app)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${mine.id}/credentials/${UNKNOWN_ID}`, headers })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${mine.id}/credentials/${theirCredential.id}`, headers })).statusCode).toBe(404)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${UNKNOWN_ID}/credentials/${theirCredential.id}`, headers })).statusCode).toBe(404)
    const [row] = await ownerSql(app)<Array<{ revoked_at: Date | null }>>`select revoked_at from credentials where id = ${theirCredential.id}`
    expect(row?.revoked_at).toBeNull()
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${mine.id}/credentials/not-a-uuid`, headers })).statusCode).toBe(400)
  })

  it('401s without a token', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const credential = await createCredential(app, agent.id)
    const response = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id}` })
    expect(response.statusCode).toBe(401)
    expect(response.headers['www-authenticate']).toMatch(/^Bearer /)
    const [row] = await ownerSql(app)<Array<{ revoked_at: Date | null }>>`select revoked_at from credentials where id = ${credential.id}`
    expect(row?.revoked_at).toBeNull()
  })

  it('still revokes when Redis is down', async () => {
    const app = await context.build({ REDIS_URL: 'redis://127.0.0.1:1' })
    const agent = await createAgent(app)
    const credential = await createCredential(app, agent.id)
    const response = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id}`, headers: await authHeaders(app) })
    expect(response.statusCode).toBe(204)
    const [row] = await ownerSql(app)<Array<{ revoked_at: Date | null }>>`select revoked_at from credentials where id = ${credential.id}`
    expect(row?.revoked_at).toBeInstanceOf(Date)
  })
})

describe('secrets stay secret', () => {
  it('never writes a secret to the database, the audit trail or the log', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    const agent = await createAgent(app)
    const secrets: string[] = []
    for (let i = 0; i < 3; i++) secrets.push((await createCredential(app, agent.id)).client_secret)
    await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app) })
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })

    const credentialRows = JSON.stringify(await ownerSql(app)`select * from credentials`)
    const auditRows = JSON.stringify(await ownerSql(app)`select * from audit_events`)
    const agentRows = JSON.stringify(await ownerSql(app)`select * from agents`)
    expect(logs.lines.length).toBeGreaterThan(0)
    for (const secret of secrets) {
      const random = secret.split('_').slice(1).join('_')
      for (const [where, text] of [['credentials', credentialRows], ['audit_events', auditRows], ['agents', agentRows], ['log', logs.text]] as Array<[string, string]>) {
        expect(text.includes(random), `secret found in ${where}`).toBe(false)
      }
    }
    expect(auditRows).not.toContain('argon2')
    expect(logs.text).not.toContain('argon2')
  })
})
