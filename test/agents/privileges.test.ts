import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { ADMIN_SCOPES, AdminScope } from '../../src/scopes.js'
import { generateClientSecret, hashSecret } from '../../src/secrets.js'
import { insertCredential } from '../../plugins/clients/credentials/repository.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

const WRITE_ONLY = [AdminScope.AgentsWrite]
// The management scopes an agents:write-only caller does not hold, in ADMIN_SCOPES order.
const BEYOND_WRITE = ADMIN_SCOPES.filter((scope) => scope !== AdminScope.AgentsWrite)

interface Client { agentId: string, clientId: string, secret: string, credentialId: string }

/** A registered agent with a credential, made by a full admin. */
async function client (app: App, scopes: string[]): Promise<Client> {
  const agent = await createAgent(app, { name: `agent ${randomBytes(3).toString('hex')}`, scopes })
  const credential = await createCredential(app, agent.id)
  return { agentId: agent.id, clientId: credential.client_id, secret: credential.client_secret, credentialId: credential.id }
}

/** A real access token from /oauth2/token, with every scope the agent holds. */
async function tokenOf (app: App, clientId: string, secret: string): Promise<string> {
  const response = await requestToken(app, clientId, secret)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

function expectProblem (response: { statusCode: number, headers: Record<string, unknown>, json: () => any }, status: number): any {
  expect(response.statusCode, JSON.stringify(response.json())).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  return response.json()
}

function expectForbidden (response: { statusCode: number, headers: Record<string, unknown>, json: () => any }, missing: string[]): void {
  const problem = expectProblem(response, 403)
  expect(problem.missing_scopes).toEqual(missing)
  for (const scope of missing) expect(problem.detail).toContain(scope)
}

const bootstrapEnv = (): Record<string, string> => ({ BOOTSTRAP_CLIENT_ID: `admin-${randomBytes(4).toString('hex')}`, BOOTSTRAP_CLIENT_SECRET: randomBytes(24).toString('base64url') })

async function agentRow (app: App, clientId: string): Promise<{ id: string, scopes: string[], status: string }> {
  const [row] = await ownerSql(app)<Array<{ id: string, scopes: string[], status: string }>>`select id, scopes, status from agents where client_id = ${clientId}`
  return row as { id: string, scopes: string[], status: string }
}

async function liveCredentialIds (app: App, agentId: string): Promise<string[]> {
  const rows = await ownerSql(app)<Array<{ id: string }>>`select id from credentials where agent_id = ${agentId} and revoked_at is null order by id`
  return rows.map((row) => row.id)
}

describe('the takeover of the security review', () => {
  it('an agent holding only agents:write cannot make itself an admin, arm itself with the admin\'s credential, or retire the admin', async () => {
    const env = bootstrapEnv()
    const app = await context.build(env)
    const admin = await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)
    const delegate = await client(app, WRITE_ONLY)
    const headers = { authorization: `Bearer ${await tokenOf(app, delegate.clientId, delegate.secret)}` }

    const escalated = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${delegate.agentId}`, headers, payload: { scopes: ADMIN_SCOPES } })
    expectForbidden(escalated, BEYOND_WRITE)
    const minted = await app.inject({ method: 'POST', url: `/api/v1/agents/${admin.id}/credentials`, headers, payload: {} })
    expectForbidden(minted, BEYOND_WRITE)
    expect(minted.json()).not.toHaveProperty('client_secret')
    expectForbidden(await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.id}`, headers }), BEYOND_WRITE)

    expect((await agentRow(app, delegate.clientId)).scopes).toEqual(WRITE_ONLY)
    expect(await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)).toMatchObject({ status: 'active' })
    expect(await liveCredentialIds(app, admin.id)).toHaveLength(1)
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, env.BOOTSTRAP_CLIENT_SECRET as string)
  })
})

describe('granting management scopes', () => {
  it('an agents:write holder grants application scopes, and only the management scopes it holds (403 naming the others)', async () => {
    const app = await context.build()
    const headers = await authHeaders(app, WRITE_ONLY, 'delegate')

    const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'orders bot', scopes: ['orders:read', AdminScope.AgentsWrite] } })
    expect(created.statusCode, created.body).toBe(201)
    const peer = created.json()

    const refused = await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'auditor', scopes: ['orders:read', AdminScope.AuditRead, AdminScope.TokensIntrospect] } })
    expectForbidden(refused, [AdminScope.AuditRead, AdminScope.TokensIntrospect])
    expect(await ownerSql(app)`select id from agents where name = 'auditor'`).toHaveLength(0)

    const widened = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${peer.id}`, headers, payload: { scopes: ['orders:read', 'orders:write', AdminScope.AgentsWrite] } })
    expect(widened.statusCode, widened.body).toBe(200)
    expectForbidden(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${peer.id}`, headers, payload: { scopes: ['orders:read', AdminScope.AgentsRead] } }), [AdminScope.AgentsRead])
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${peer.id}`, headers: await authHeaders(app) })).json().scopes).toEqual(['orders:read', 'orders:write', AdminScope.AgentsWrite])
  })

  it('no agent widens its own management scopes', async () => {
    const app = await context.build()
    const me = await client(app, [AdminScope.AgentsWrite, AdminScope.AgentsRead, 'orders:read'])
    const headers = { authorization: `Bearer ${await tokenOf(app, me.clientId, me.secret)}` }
    expectForbidden(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${me.agentId}`, headers, payload: { scopes: [AdminScope.AgentsWrite, AdminScope.AgentsRead, AdminScope.AuditRead] } }), [AdminScope.AuditRead])
    // Application scopes are another matter.
    const widened = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${me.agentId}`, headers, payload: { scopes: [AdminScope.AgentsWrite, AdminScope.AgentsRead, 'orders:read', 'orders:write'] } })
    expect(widened.statusCode, widened.body).toBe(200)
  })
})

describe('acting on another agent', () => {
  it('an agents:write-only caller cannot change, suspend, decommission, or give or revoke credentials of an agent with more management scopes', async () => {
    const app = await context.build()
    const admin = await client(app, [AdminScope.AgentsRead, AdminScope.AgentsWrite, AdminScope.AuditRead])
    const headers = await authHeaders(app, WRITE_ONLY, 'delegate')
    const missing = [AdminScope.AgentsRead, AdminScope.AuditRead]

    expectForbidden(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.agentId}`, headers, payload: { name: 'renamed' } }), missing)
    expectForbidden(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.agentId}`, headers, payload: { status: 'suspended' } }), missing)
    expectForbidden(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.agentId}`, headers, payload: { scopes: [] } }), missing)
    expectForbidden(await app.inject({ method: 'POST', url: `/api/v1/agents/${admin.agentId}/credentials`, headers, payload: {} }), missing)
    expectForbidden(await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.agentId}/credentials/${admin.credentialId}`, headers }), missing)
    expectForbidden(await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.agentId}`, headers }), missing)

    expect(await agentRow(app, admin.clientId)).toMatchObject({ status: 'active', scopes: [AdminScope.AgentsRead, AdminScope.AgentsWrite, AdminScope.AuditRead] })
    expect(await liveCredentialIds(app, admin.agentId)).toEqual([admin.credentialId])
    await tokenOf(app, admin.clientId, admin.secret)
  })

  it('an agents:write-only caller manages its peers: change, suspend, credentials, decommission', async () => {
    const app = await context.build()
    const peer = await client(app, [AdminScope.AgentsWrite, 'orders:read'])
    const headers = await authHeaders(app, WRITE_ONLY, 'delegate')

    expect((await app.inject({ method: 'PATCH', url: `/api/v1/agents/${peer.agentId}`, headers, payload: { name: 'renamed', status: 'suspended' } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/agents/${peer.agentId}`, headers, payload: { status: 'active' } })).statusCode).toBe(200)
    const issued = await app.inject({ method: 'POST', url: `/api/v1/agents/${peer.agentId}/credentials`, headers, payload: {} })
    expect(issued.statusCode, issued.body).toBe(201)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${peer.agentId}/credentials/${peer.credentialId}`, headers })).statusCode).toBe(204)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${peer.agentId}`, headers })).statusCode).toBe(204)
    expect(await agentRow(app, peer.clientId)).toMatchObject({ status: 'decommissioned' })
  })

  it('a caller holding every management scope manages an admin', async () => {
    const app = await context.build()
    const admin = await client(app, [AdminScope.AgentsRead, AdminScope.AgentsWrite, AdminScope.AuditRead])
    const headers = await authHeaders(app, ADMIN_SCOPES, 'root')
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.agentId}`, headers, payload: { status: 'suspended', scopes: [AdminScope.AgentsRead] } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: `/api/v1/agents/${admin.agentId}/credentials`, headers, payload: {} })).statusCode).toBe(201)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.agentId}/credentials/${admin.credentialId}`, headers })).statusCode).toBe(204)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.agentId}`, headers })).statusCode).toBe(204)
  })

  it('at /oauth2/revoke an agents:write client revokes a peer\'s token, not an admin\'s (400 invalid_request)', async () => {
    const app = await context.build()
    const delegate = await client(app, WRITE_ONLY)
    const peer = await client(app, ['orders:read'])
    const admin = await client(app, ADMIN_SCOPES)
    const adminToken = await tokenOf(app, admin.clientId, admin.secret)
    const peerToken = await tokenOf(app, peer.clientId, peer.secret)
    const revoke = async (token: string): Promise<Awaited<ReturnType<typeof postForm>>> => await postForm(app, '/oauth2/revoke', { token }, { authorization: basicAuth(delegate.clientId, delegate.secret) })

    const refused = await revoke(adminToken)
    expect(refused.statusCode).toBe(400)
    expect(refused.json().error).toBe('invalid_request')
    expect(refused.json().error_description).toContain(AdminScope.TokensIntrospect)
    const active = await postForm(app, '/oauth2/introspect', { token: adminToken }, { authorization: basicAuth(admin.clientId, admin.secret) })
    expect(active.json().active).toBe(true)

    expect((await revoke(peerToken)).statusCode).toBe(200)
    expect((await postForm(app, '/oauth2/introspect', { token: peerToken }, { authorization: basicAuth(peer.clientId, peer.secret) })).json().active).toBe(false)

    const [denied] = (await auditEvents(app, 'authz.denied')).filter((e) => e.agent_id === admin.agentId)
    expect(denied).toMatchObject({ actor: delegate.clientId, data: { action: 'token.revoke', reason: 'management_scope_not_held', missing_scopes: BEYOND_WRITE, actor_agent_id: delegate.agentId } })
  })
})

describe('the bootstrap admin', () => {
  it('is not suspended, decommissioned, stripped of management scopes, or given or stripped of its credential through the API: 409', async () => {
    const env = bootstrapEnv()
    const app = await context.build(env)
    const admin = await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)
    const [credentialId] = await liveCredentialIds(app, admin.id)
    const headers = await authHeaders(app, ADMIN_SCOPES, 'root')

    for (const [method, url, payload] of [
      ['PATCH', `/api/v1/agents/${admin.id}`, { status: 'suspended' }],
      ['PATCH', `/api/v1/agents/${admin.id}`, { scopes: [AdminScope.AgentsRead, AdminScope.AgentsWrite] }],
      ['DELETE', `/api/v1/agents/${admin.id}`, undefined],
      ['POST', `/api/v1/agents/${admin.id}/credentials`, {}],
      ['DELETE', `/api/v1/agents/${admin.id}/credentials/${credentialId as string}`, undefined]
    ] as const) {
      const problem = expectProblem(await app.inject({ method, url, headers, payload }), 409)
      expect(problem.detail).toContain('BOOTSTRAP_CLIENT_ID')
    }
    // What the configuration does not govern stays the API's.
    const renamed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.id}`, headers, payload: { name: 'ops admin', scopes: [...ADMIN_SCOPES, 'orders:read'] } })
    expect(renamed.statusCode, renamed.body).toBe(200)

    expect(await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)).toMatchObject({ status: 'active', scopes: [...ADMIN_SCOPES, 'orders:read'] })
    expect(await liveCredentialIds(app, admin.id)).toEqual([credentialId])
    const denials = (await auditEvents(app, 'authz.denied')).filter((e) => e.agent_id === admin.id)
    expect(denials.map((e) => [e.actor, e.data.action, e.data.reason])).toEqual([
      ['root', 'agent.update', 'bootstrap_admin'],
      ['root', 'agent.update', 'bootstrap_admin'],
      ['root', 'agent.decommission', 'bootstrap_admin'],
      ['root', 'credential.create', 'bootstrap_admin'],
      ['root', 'credential.revoke', 'bootstrap_admin']
    ])
  })

  it('BOOTSTRAP_CLIENT_SECRET works beside another live credential, before and after a restart, with a cold cache', async () => {
    const env = bootstrapEnv()
    let app = await context.build(env)
    const admin = await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)
    // A second credential, as the rotation procedure of earlier releases made through the API.
    const otherId = newId()
    const otherSecret = generateClientSecret(otherId)
    await insertCredential(ownerSql(app), { id: otherId, agent_id: admin.id, secret_hash: await hashSecret(otherSecret), expires_at: null })
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, env.BOOTSTRAP_CLIENT_SECRET as string)
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, otherSecret)
    const live = await liveCredentialIds(app, admin.id)
    expect(live).toHaveLength(2)
    await app.close()

    const logs = new LogCapture()
    app = await context.build(env, { logs })
    expect(await liveCredentialIds(app, admin.id)).toEqual(live)
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, env.BOOTSTRAP_CLIENT_SECRET as string)
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, otherSecret)
    const warning = logs.lines.map((line) => JSON.parse(line)).find((line) => line.msg?.startsWith('the bootstrap admin holds live credentials besides BOOTSTRAP_CLIENT_SECRET'))
    expect(warning).toMatchObject({ level: 40, credentialIds: [otherId] })
    // The leftover is revocable; the bootstrap credential is not.
    const headers = await authHeaders(app)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.id}/credentials/${otherId}`, headers })).statusCode).toBe(204)
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, env.BOOTSTRAP_CLIENT_SECRET as string)
  })

  it('adopts the bootstrap credential of an earlier release, which was not marked, without revoking anything', async () => {
    const env = bootstrapEnv()
    let app = await context.build(env)
    const admin = await agentRow(app, env.BOOTSTRAP_CLIENT_ID as string)
    await ownerSql(app)`update credentials set bootstrap = false where agent_id = ${admin.id}`
    const otherId = newId()
    await insertCredential(ownerSql(app), { id: otherId, agent_id: admin.id, secret_hash: await hashSecret(generateClientSecret(otherId)), expires_at: null })
    const live = await liveCredentialIds(app, admin.id)
    await app.close()

    app = await context.build(env)
    expect(await liveCredentialIds(app, admin.id)).toEqual(live)
    const marked = await ownerSql(app)<Array<{ id: string }>>`select id from credentials where agent_id = ${admin.id} and bootstrap`
    expect(marked.map((row) => row.id)).toEqual([live[0]])
    await tokenOf(app, env.BOOTSTRAP_CLIENT_ID as string, env.BOOTSTRAP_CLIENT_SECRET as string)
  })
})

describe('every refusal is an audit event', () => {
  it('records authz.denied with who, what, on which agent and the missing scopes; insufficient_scope too', async () => {
    const app = await context.build()
    const admin = await client(app, ADMIN_SCOPES)
    const delegate = await authHeaders(app, WRITE_ONLY, 'refused-delegate')

    expectForbidden(await app.inject({ method: 'DELETE', url: `/api/v1/agents/${admin.agentId}`, headers: delegate }), BEYOND_WRITE)
    expectForbidden(await app.inject({ method: 'POST', url: '/api/v1/agents', headers: delegate, payload: { name: 'x', scopes: [AdminScope.AuditRead] } }), [AdminScope.AuditRead])
    const listed = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: delegate })
    expect(listed.statusCode).toBe(403)
    expect(listed.json().missing_scopes).toEqual([AdminScope.AgentsRead])

    const events = (await auditEvents(app, 'authz.denied')).filter((e) => e.actor === 'refused-delegate')
    expect(events.map((e) => [e.agent_id, e.data.action, e.data.reason, e.data.missing_scopes])).toEqual([
      [admin.agentId, 'agent.decommission', 'management_scope_not_held', BEYOND_WRITE],
      [null, 'agent.create', 'management_scope_not_held', [AdminScope.AuditRead]],
      [null, 'GET /api/v1/agents', 'insufficient_scope', [AdminScope.AgentsRead]]
    ])
    expect(events.every((e) => e.data.method !== undefined && typeof e.data.actor_agent_id === 'string')).toBe(true)
  })
})
