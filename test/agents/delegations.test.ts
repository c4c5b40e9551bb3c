import { describe, expect, it } from 'vitest'
import { AdminScope } from '../../src/scopes.js'
import { setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent } from '../support/management.js'

const context = setupTestContext()

const url = (agentId: string): string => `/api/v1/agents/${agentId}/delegations`

describe('/api/v1/agents/{id}/delegations', () => {
  it('grants, lists and removes a delegation, each change an audit event', async () => {
    const app = await context.build()
    const subject = await createAgent(app, { name: 'assistant', scopes: ['calendar:read', 'calendar:write'] })
    const actor = await createAgent(app, { name: 'scheduler' })
    const headers = await authHeaders(app, [AdminScope.AgentsWrite, AdminScope.AgentsRead], 'ops-admin')
    const created = await app.inject({ method: 'POST', url: url(subject.id), headers, payload: { actor_id: actor.id, scopes: ['calendar:read'], expires_at: '2999-01-01T00:00:00Z' } })
    expect(created.statusCode, created.body).toBe(201)
    const delegation = created.json()
    expect(delegation).toMatchObject({ agent_id: subject.id, actor_id: actor.id, scopes: ['calendar:read'], expires_at: '2999-01-01T00:00:00.000Z', created_by: 'ops-admin' })
    expect(created.headers.location).toBe(`${url(subject.id)}/${delegation.id}`)

    // One per pair.
    const again = await app.inject({ method: 'POST', url: url(subject.id), headers, payload: { actor_id: actor.id, scopes: ['calendar:write'] } })
    expect(again.statusCode).toBe(409)

    const listed = await app.inject({ method: 'GET', url: url(subject.id), headers })
    expect(listed.statusCode).toBe(200)
    expect(listed.json().items).toEqual([delegation])

    const removed = await app.inject({ method: 'DELETE', url: `${url(subject.id)}/${delegation.id}`, headers })
    expect(removed.statusCode).toBe(204)
    expect((await app.inject({ method: 'DELETE', url: `${url(subject.id)}/${delegation.id}`, headers })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: url(subject.id), headers })).json().items).toEqual([])

    const events = await auditEvents(app, 'delegation.granted', 'delegation.removed')
    expect(events).toMatchObject([
      { type: 'delegation.granted', agent_id: subject.id, actor: 'ops-admin', data: { delegation_id: delegation.id, actor_id: actor.id, scopes: ['calendar:read'] } },
      { type: 'delegation.removed', agent_id: subject.id, actor: 'ops-admin', data: { delegation_id: delegation.id, actor_id: actor.id } }
    ])
  })

  it('delegates only what the subject holds, and management scopes only a caller that holds them', async () => {
    const app = await context.build()
    const subject = await createAgent(app, { name: 'reader', scopes: ['calendar:read', AdminScope.AgentsRead] })
    const actor = await createAgent(app, { name: 'helper' })
    const writer = await authHeaders(app, [AdminScope.AgentsWrite], 'writer')
    // The subject holds agents:read, which the caller does not: it may not act on the subject at all.
    const management = await app.inject({ method: 'POST', url: url(subject.id), headers: writer, payload: { actor_id: actor.id, scopes: ['calendar:read'] } })
    expect(management.statusCode).toBe(403)
    expect(management.json().missing_scopes).toEqual([AdminScope.AgentsRead])
    const plain = await createAgent(app, { name: 'plain', scopes: ['calendar:read'] })
    const notHeld = await app.inject({ method: 'POST', url: url(plain.id), headers: writer, payload: { actor_id: actor.id, scopes: ['calendar:write'] } })
    expect(notHeld.statusCode).toBe(400)
    expect(notHeld.json().detail).toMatch(/does not hold calendar:write/)
    const self = await app.inject({ method: 'POST', url: url(plain.id), headers: writer, payload: { actor_id: plain.id, scopes: ['calendar:read'] } })
    expect(self.statusCode).toBe(400)
    const unknown = await app.inject({ method: 'POST', url: url(plain.id), headers: writer, payload: { actor_id: '0190a0a0-0000-7000-8000-000000000000', scopes: ['calendar:read'] } })
    expect(unknown.statusCode).toBe(400)
    const past = await app.inject({ method: 'POST', url: url(plain.id), headers: writer, payload: { actor_id: actor.id, scopes: ['calendar:read'], expires_at: '2001-01-01T00:00:00Z' } })
    expect(past.statusCode).toBe(400)
    // Reading needs agents:read, granting agents:write.
    expect((await app.inject({ method: 'GET', url: url(plain.id), headers: writer })).statusCode).toBe(403)
    expect((await app.inject({ method: 'POST', url: url(plain.id), headers: await authHeaders(app, [AdminScope.AgentsRead]), payload: { actor_id: actor.id, scopes: ['calendar:read'] } })).statusCode).toBe(403)
    expect((await auditEvents(app, 'authz.denied')).length).toBeGreaterThanOrEqual(2)
  })
})
