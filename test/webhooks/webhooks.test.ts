import type { LookupFunction } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AUDIT_EVENT_TYPES } from '../../plugins/audit/public.js'
import { findSubscription, updateSubscription } from '../../plugins/webhooks/repository.js'
import type { App } from '../../src/app.js'
import { DEFAULT_ORG_ID, inOrganization } from '../../src/database.js'
import { ADMIN_SCOPES, AdminScope } from '../../src/scopes.js'
import { auditEvents, authHeaders, createAgent } from '../support/management.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { requestToken } from '../support/oauth.js'
import { eventually, Receiver, verify } from './receiver.js'

const context = setupTestContext()
// Short delays so retries happen within a test; real receivers on 127.0.0.1 (http, allowed by the flag).
context.env = {
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_RETRY_SCHEDULE: '50ms,50ms,50ms',
  WEBHOOK_POLL_INTERVAL_MS: '50',
  WEBHOOK_TIMEOUT_MS: '3000'
}

let receiver: Receiver
beforeEach(async () => { receiver = await Receiver.start() })
afterEach(async () => { await receiver.close() })

async function subscribe (app: App, body: Record<string, unknown> = {}): Promise<{ id: string, secret: string, [key: string]: unknown }> {
  const response = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: await authHeaders(app), payload: { url: receiver.url, events: ['*'], ...body } })
  expect(response.statusCode, response.body).toBe(201)
  return response.json()
}

async function deliveries (app: App, id: string): Promise<Array<Record<string, any>>> {
  const response = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries?limit=100`, headers: await authHeaders(app) })
  expect(response.statusCode, response.body).toBe(200)
  return response.json().items
}

async function webhook (app: App, id: string): Promise<Record<string, any>> {
  const response = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app) })
  return response.json()
}

/** The audit events of one subscription (data.webhook_id), of the types given, in chain order. */
async function webhookEvents (app: App, id: string, ...types: string[]) {
  return (await auditEvents(app, ...types)).filter((event) => event.data.webhook_id === id)
}

describe('webhook subscriptions', () => {
  it('creates a subscription with a whsec_ secret shown once, stored sealed, audited without it', async () => {
    const app = await context.build()
    const created = await subscribe(app, { events: ['agent.created', 'credential.revoked'], description: 'SIEM' })
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/)
    expect(created).toMatchObject({ events: ['agent.created', 'credential.revoked'], description: 'SIEM', enabled: true, disabled_reason: null })

    const listed = await app.inject({ method: 'GET', url: '/api/v1/webhooks', headers: await authHeaders(app) })
    expect(listed.json().items.map((item: { id: string }) => item.id)).toContain(created.id)
    expect(listed.body).not.toContain('whsec_')
    expect(JSON.stringify(await webhook(app, created.id))).not.toContain('whsec_')

    const rows = await ownerSql(app)`select * from webhook_subscriptions`
    expect(JSON.stringify(rows)).not.toContain(created.secret.slice(6))
    expect(String(rows[0]?.secret_sealed)).toMatch(/^v1\./)
    const events = await webhookEvents(app, created.id, 'webhook.created')
    expect(events.at(-1)?.data).toMatchObject({ webhook_id: created.id, events: ['agent.created', 'credential.revoked'], url_origin: new URL(receiver.url).origin })
    expect(JSON.stringify(await auditEvents(app))).not.toContain(created.secret.slice(6))
  })

  it('refuses an unknown event type with a 400 listing the valid ones, and bad URLs', async () => {
    const app = await context.build()
    const headers = await authHeaders(app)
    const unknown = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers, payload: { url: receiver.url, events: ['agent.created', 'agent.exploded'] } })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.headers['content-type']).toContain('application/problem+json')
    expect(unknown.json().detail).toContain('agent.exploded')
    for (const type of AUDIT_EVENT_TYPES) expect(unknown.json().detail).toContain(type)
    for (const payload of [
      { url: 'not a url', events: ['*'] },
      { url: 'ftp://example.com/', events: ['*'] },
      { url: receiver.url, events: ['*', 'agent.created'] },
      { url: receiver.url, events: [] },
      { url: receiver.url, events: ['*'], secret: 'mine' }
    ]) {
      const response = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers, payload })
      expect(response.statusCode, JSON.stringify(payload)).toBe(400)
    }
    const missing = await app.inject({ method: 'GET', url: '/api/v1/webhooks/01900000-0000-7000-8000-000000000000', headers })
    expect(missing.statusCode).toBe(404)
  })

  it('delivers every event type, in chain order, each verified by the standardwebhooks package', async () => {
    const app = await context.build()
    const { id, secret } = await subscribe(app)
    // Every type the trail knows, recorded as the trail records them; then real API acts on top.
    for (const type of AUDIT_EVENT_TYPES) await app.audit.record({ orgId: DEFAULT_ORG_ID, type, actor: 'test', data: { n: type } })
    const agent = await createAgent(app, { name: 'delivered' })
    await receiver.until((received) => received.filter((request) => request.json.type !== 'webhook.test').length >= AUDIT_EVENT_TYPES.length + 1)
    await receiver.until((received) => received.some((request) => request.json.event?.agent_id === agent.id))

    const types = receiver.received.map((request) => request.json.type)
    for (const type of AUDIT_EVENT_TYPES) expect(types).toContain(type)
    const seqs = receiver.received.map((request) => BigInt(request.json.event?.seq ?? '0'))
    expect([...seqs].sort((a, b) => (a < b ? -1 : 1))).toEqual(seqs)
    for (const request of receiver.received) {
      expect(() => verify(secret, request)).not.toThrow()
      expect(request.json).toMatchObject({ type: expect.any(String), timestamp: expect.any(String), data: expect.any(Object) })
      expect(request.body).not.toContain('whsec_')
    }
    const created = receiver.received.find((request) => request.json.type === 'agent.created' && request.json.event?.agent_id === agent.id)
    expect(created?.json.data).toMatchObject({ client_id: agent.client_id, name: 'delivered' })
    // A forged body does not verify.
    expect(() => verify(secret, { ...receiver.received[0]!, body: receiver.received[0]!.body.replace('"type"', '"type" ') })).toThrow()

    // The receiver answered before the worker recorded the last answer: wait for the record.
    const listed = await eventually(async () => { const list = await deliveries(app, id); return list.every((delivery) => delivery.status !== 'pending') ? list : undefined })
    expect(listed.every((delivery) => delivery.status === 'succeeded' && delivery.attempts === 1 && delivery.last_status_code === 204)).toBe(true)
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    expect(metrics.body).toMatch(/agentidp_webhook_attempts_total\{outcome="success"\} \d+/)
    expect(metrics.body).toMatch(/agentidp_webhook_lag_seconds_count \d+/)
  })

  it('retries a receiver that fails twice, with the same webhook-id, and then succeeds', async () => {
    // The second attempt gets no answer: a timeout (shortened here) is a failure like a 500.
    const app = await context.build({ WEBHOOK_TIMEOUT_MS: '300' })
    const { id, secret } = await subscribe(app, { events: ['agent.created'] })
    receiver.answers = [{ status: 500 }, 'hang', { status: 200 }]
    await createAgent(app, { name: 'retried' })
    const received = await receiver.until((requests) => requests.length >= 3, 20_000)
    const ids = new Set(received.map((request) => request.headers['webhook-id']))
    expect(ids.size).toBe(1)
    for (const request of received) expect(() => verify(secret, request)).not.toThrow()
    const [delivery] = await eventually(async () => { const list = await deliveries(app, id); return list[0]?.status === 'succeeded' ? list : undefined })
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 3, last_status_code: 200, next_attempt_at: null, event_type: 'agent.created' })
    expect(delivery?.message_id).toBe(received[0]?.headers['webhook-id'])
  })

  it('disables the subscription on a 410, with an audit event; PATCH re-enables it and resumes', async () => {
    const app = await context.build()
    const { id } = await subscribe(app, { events: ['agent.created'] })
    receiver.answers = [{ status: 410 }]
    await createAgent(app, { name: 'gone' })
    const disabled = await eventually(async () => { const hook = await webhook(app, id); return hook.enabled === false ? hook : undefined })
    expect(disabled).toMatchObject({ enabled: false, disabled_reason: 'gone' })
    const [event] = await webhookEvents(app, id, 'webhook.disabled')
    expect(event).toMatchObject({ actor: 'system', data: { webhook_id: id, reason: 'gone', status_code: 410 } })
    expect((await deliveries(app, id))[0]).toMatchObject({ status: 'failed', attempts: 1, last_status_code: 410 })

    // Disabled: events are not delivered.
    await createAgent(app, { name: 'while disabled' })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(receiver.received).toHaveLength(1)
    const test = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/test`, headers: await authHeaders(app) })
    expect(test.statusCode).toBe(409)

    const enabled = await app.inject({ method: 'PATCH', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app), payload: { enabled: true } })
    expect(enabled.json()).toMatchObject({ enabled: true, disabled_reason: null })
    await receiver.until((received) => received.some((request) => request.json.data.name === 'while disabled'))
    expect((await webhookEvents(app, id, 'webhook.updated')).at(-1)?.data).toMatchObject({ webhook_id: id, enabled: { from: false, to: true } })
  })

  it('honours Retry-After on 429 and 503, and never follows a redirect', async () => {
    const app = await context.build()
    const { id } = await subscribe(app, { events: ['agent.created'] })
    receiver.answers = [{ status: 429, headers: { 'retry-after': '1' } }, { status: 302, headers: { location: `${receiver.url}/elsewhere` } }, { status: 503, headers: { 'retry-after': '1' } }]
    await createAgent(app, { name: 'slow down' })
    const received = await receiver.until((requests) => requests.length >= 4, 20_000)
    // The schedule says 50 ms; the receiver asked for a second, twice.
    expect(received[1]!.at - received[0]!.at).toBeGreaterThanOrEqual(950)
    expect(received[3]!.at - received[2]!.at).toBeGreaterThanOrEqual(950)
    // The redirect was an answer, a failure: nothing went to its location.
    expect(received.every((request) => request.headers['webhook-id'] === received[0]!.headers['webhook-id'])).toBe(true)
    expect(received.map((request) => request.json.type)).toEqual(['agent.created', 'agent.created', 'agent.created', 'agent.created'])
    const [delivery] = await eventually(async () => { const list = await deliveries(app, id); return list[0]?.status === 'succeeded' ? list : undefined })
    expect(delivery).toMatchObject({ attempts: 4, last_status_code: 204 })
  })

  it('gives a delivery up after the schedule, then delivers the next; a failing subscription holds up no other', async () => {
    const app = await context.build()
    const failing = await subscribe(app, { events: ['agent.created'] })
    const other = await Receiver.start()
    try {
      const healthy = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: await authHeaders(app), payload: { url: other.url, events: ['agent.created'] } })
      expect(healthy.statusCode).toBe(201)
      receiver.answers = [{ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }]
      await createAgent(app, { name: 'first' })
      await createAgent(app, { name: 'second' })
      await other.until((received) => received.length >= 2)
      expect(other.received.map((request) => request.json.data.name)).toEqual(['first', 'second'])
      // Four attempts of the first (one and three retries), in order, and only then the second.
      const received = await receiver.until((requests) => requests.length >= 5)
      expect(received.map((request) => request.json.data.name)).toEqual(['first', 'first', 'first', 'first', 'second'])
      const list = await eventually(async () => { const list = await deliveries(app, failing.id); return list.length === 2 && list[0]?.status === 'succeeded' ? list : undefined })
      expect(list[1]).toMatchObject({ status: 'failed', attempts: 4, last_status_code: 500, next_attempt_at: null })
      expect((await webhook(app, failing.id)).enabled).toBe(true)
    } finally {
      await other.close()
    }
  })

  it('disables a subscription failing for WEBHOOK_DISABLE_AFTER_DAYS, with an audit event', async () => {
    // 0.00001 days: under a second.
    const app = await context.build({ WEBHOOK_DISABLE_AFTER_DAYS: '0.00001', WEBHOOK_RETRY_SCHEDULE: '100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms' })
    const { id } = await subscribe(app, { events: ['agent.created'] })
    receiver.otherwise = { status: 500 }
    await createAgent(app, { name: 'never' })
    const disabled = await eventually(async () => { const hook = await webhook(app, id); return hook.enabled === false ? hook : undefined })
    expect(disabled.disabled_reason).toBe('failing')
    const [event] = await webhookEvents(app, id, 'webhook.disabled')
    expect(event?.data).toMatchObject({ webhook_id: id, reason: 'failing', failing_since: expect.any(String) })
    expect((await deliveries(app, id))[0]?.status).toBe('pending')
  })

  it('rotates the secret: during the overlap every delivery carries both signatures', async () => {
    const app = await context.build()
    const { id, secret: oldSecret } = await subscribe(app, { events: ['agent.created'] })
    const rotated = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/rotate-secret`, headers: await authHeaders(app) })
    expect(rotated.statusCode).toBe(200)
    const newSecret = rotated.json().secret as string
    expect(newSecret).toMatch(/^whsec_/)
    expect(newSecret).not.toBe(oldSecret)
    expect(Date.parse(rotated.json().previous_secret_expires_at) - Date.now()).toBeGreaterThan(23 * 3600_000)
    await createAgent(app, { name: 'rotated' })
    const [request] = await receiver.until((received) => received.length >= 1)
    expect(String(request!.headers['webhook-signature']).split(' ')).toHaveLength(2)
    // A receiver that still has the old secret, and one that has the new, both verify.
    expect(() => verify(oldSecret, request!)).not.toThrow()
    expect(() => verify(newSecret, request!)).not.toThrow()
    expect(() => verify(`whsec_${Buffer.alloc(24, 1).toString('base64')}`, request!)).toThrow()
    const [event] = await webhookEvents(app, id, 'webhook.secret_rotated')
    expect(event?.data).toMatchObject({ webhook_id: id })
    expect(JSON.stringify(event)).not.toContain(newSecret.slice(6))

    // The overlap over, only the new secret signs.
    await ownerSql(app)`update webhook_subscriptions set previous_secret_expires_at = now() - interval '1 second'`
    await createAgent(app, { name: 'after overlap' })
    const [, later] = await receiver.until((received) => received.length >= 2)
    expect(String(later!.headers['webhook-signature']).split(' ')).toHaveLength(1)
    expect(() => verify(newSecret, later!)).not.toThrow()
    expect(() => verify(oldSecret, later!)).toThrow()
  })

  it('sends webhook.test, and redelivers a delivery with the same webhook-id and body', async () => {
    const app = await context.build()
    const { id, secret } = await subscribe(app, { events: ['agent.created'] })
    const test = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/test`, headers: await authHeaders(app) })
    expect(test.statusCode).toBe(202)
    expect(test.json()).toMatchObject({ event_type: 'webhook.test', status: 'pending', event_seq: null })
    const [first] = await receiver.until((received) => received.length >= 1)
    expect(first!.json).toMatchObject({ type: 'webhook.test', data: { webhook_id: id } })
    expect(() => verify(secret, first!)).not.toThrow()

    const done = await eventually(async () => { const list = await deliveries(app, id); return list[0]?.status === 'succeeded' ? list[0] : undefined })
    const again = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/deliveries/${done.id}/redeliver`, headers: await authHeaders(app) })
    expect(again.statusCode).toBe(202)
    expect(again.json().message_id).toBe(done.message_id)
    const [, second] = await receiver.until((received) => received.length >= 2)
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id'])
    expect(second!.body).toBe(first!.body)
    expect(() => verify(secret, second!)).not.toThrow()

    const unknown = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/deliveries/01900000-0000-7000-8000-000000000000/redeliver`, headers: await authHeaders(app) })
    expect(unknown.statusCode).toBe(404)
    const page = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries?limit=1`, headers: await authHeaders(app) })
    const next = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries?limit=1&cursor=${page.json().next_cursor as string}`, headers: await authHeaders(app) })
    expect([page.json().items[0].id, next.json().items[0].id]).toEqual([again.json().id, done.id])
    const bad = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries?cursor=abc`, headers: await authHeaders(app) })
    expect(bad.statusCode).toBe(400)
  })

  it('changes and deletes a subscription, each change audited; deleted, it receives nothing', async () => {
    const app = await context.build()
    const { id } = await subscribe(app, { events: ['agent.created'] })
    const patched = await app.inject({ method: 'PATCH', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app), payload: { events: ['agent.updated'], description: 'now updates' } })
    expect(patched.json()).toMatchObject({ events: ['agent.updated'], description: 'now updates' })
    const agent = await createAgent(app, { name: 'not delivered' })
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id as string}`, headers: await authHeaders(app), payload: { name: 'renamed' } })
    const [request] = await receiver.until((received) => received.length >= 1)
    expect(request!.json.type).toBe('agent.updated')

    const deleted = await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app) })
    expect(deleted.statusCode).toBe(204)
    expect((await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app) })).statusCode).toBe(404)
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id as string}`, headers: await authHeaders(app), payload: { name: 'renamed again' } })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(receiver.received).toHaveLength(1)
    expect((await webhookEvents(app, id, 'webhook.updated', 'webhook.deleted')).map((event) => event.type)).toEqual(['webhook.updated', 'webhook.deleted'])
  })
})

describe('without a key to seal secrets', () => {
  it('refuses to create or rotate with a 503 problem that says why, storing nothing', async () => {
    const app = await context.build()
    const { id } = await subscribe(app)
    // What production without KEY_ENCRYPTION_KEY has (plugins/infra/keys.ts).
    ;(app as { keyEncryptionKey: Buffer | undefined }).keyEncryptionKey = undefined
    const count = async (): Promise<number> => (await ownerSql(app)<[{ n: number }]>`select count(*)::int as n from webhook_subscriptions`)[0].n
    const before = await count()
    const created = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: await authHeaders(app), payload: { url: receiver.url, events: ['*'] } })
    expect(created.statusCode).toBe(503)
    expect(created.headers['content-type']).toContain('application/problem+json')
    expect(created.json().detail).toContain('KEY_ENCRYPTION_KEY')
    const rotated = await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/rotate-secret`, headers: await authHeaders(app) })
    expect(rotated.statusCode).toBe(503)
    expect(await count()).toBe(before)
  })
})

describe('who may manage webhooks', () => {
  it('reading needs webhooks:read; subscribing needs webhooks:write and audit:read; only holders grant the scopes', async () => {
    const app = await context.build()
    const { id } = await subscribe(app)
    const readOnly = await authHeaders(app, [AdminScope.WebhooksRead], 'hook-reader')
    expect((await app.inject({ method: 'GET', url: '/api/v1/webhooks', headers: readOnly })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries`, headers: readOnly })).statusCode).toBe(200)
    const denied = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: readOnly, payload: { url: receiver.url, events: ['*'] } })
    expect(denied.statusCode).toBe(403)

    // webhooks:write alone cannot make audit events flow to a URL of its choosing: that is audit:read's authority.
    const writer = await authHeaders(app, [AdminScope.WebhooksWrite], 'hook-writer')
    const noAudit = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: writer, payload: { url: receiver.url, events: ['*'] } })
    expect(noAudit.statusCode).toBe(403)
    expect(noAudit.json().missing_scopes).toEqual([AdminScope.AuditRead])
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/webhooks/${id}`, headers: writer, payload: { events: ['*'] } })).statusCode).toBe(403)
    expect((await app.inject({ method: 'GET', url: '/api/v1/webhooks', headers: writer })).statusCode).toBe(403)
    expect((await app.inject({ method: 'POST', url: `/api/v1/webhooks/${id}/rotate-secret`, headers: writer })).statusCode).toBe(200)
    const both = await authHeaders(app, [AdminScope.WebhooksWrite, AdminScope.AuditRead], 'hook-admin')
    expect((await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: both, payload: { url: receiver.url, events: ['agent.created'] } })).statusCode).toBe(201)
    expect((await auditEvents(app, 'authz.denied')).length).toBeGreaterThanOrEqual(3)

    // Management scopes: an agents:write holder grants webhooks:* only if it holds them.
    const delegated = await authHeaders(app, [AdminScope.AgentsWrite, AdminScope.AgentsRead], 'delegated')
    const grant = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: delegated, payload: { name: 'wants hooks', scopes: [AdminScope.WebhooksWrite] } })
    expect(grant.statusCode).toBe(403)
    expect(grant.json().missing_scopes).toEqual([AdminScope.WebhooksWrite])
    expect(ADMIN_SCOPES).toEqual(expect.arrayContaining([AdminScope.WebhooksRead, AdminScope.WebhooksWrite]))
  })
})

describe('SSRF rules for receivers', () => {
  it('refuses http and private addresses at subscription, and checks the resolved address at connect time', async () => {
    const app = await context.build({ WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'false' })
    const headers = await authHeaders(app)
    for (const url of [receiver.url, 'https://127.0.0.1/hook', 'https://[::1]/hook', 'https://10.0.0.8/hook', 'https://169.254.169.254/latest', 'https://user:pw@hooks.example/']) {
      const response = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers, payload: { url, events: ['*'] } })
      expect(response.statusCode, url).toBe(400)
    }
    // A name that resolves to a private address (DNS rebinding, say): refused when connecting, a failed attempt.
    const toLoopback: LookupFunction = (_hostname, options, callback) => {
      if ((options as { all?: boolean }).all === true) (callback as unknown as (e: null, a: Array<{ address: string, family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }])
      else callback(null, '127.0.0.1', 4)
    }
    app.webhookWorker.lookup = toLoopback
    const created = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers, payload: { url: 'https://hooks.example/receive', events: ['agent.created'] } })
    expect(created.statusCode).toBe(201)
    await createAgent(app, { name: 'rebinding' })
    const [delivery] = await eventually(async () => { const list = await deliveries(app, created.json().id); return (list[0]?.attempts ?? 0) >= 1 ? list : undefined })
    expect(delivery).toMatchObject({ last_status_code: null })
    expect(delivery?.last_error).toMatch(/refused: hooks\.example resolves to no public address/)
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    expect(metrics.body).toMatch(/agentidp_webhook_attempts_total\{outcome="refused"\} [1-9]/)
  })
})

describe('organizations', () => {
  it('delivers each organization\'s events to its own subscriptions only; deleting the organization deletes them', async () => {
    const app = await context.build()
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'hooked', name: 'Hooked' } })
    expect(created.statusCode, created.body).toBe(201)
    const org = created.json() as { id: string, admin: { client_id: string, client_secret: string } }
    // The organization's first admin holds webhooks:* and audit:read (organization scopes, not the platform's).
    const token = await requestToken(app, org.admin.client_id, org.admin.client_secret, {}, undefined, '/o/hooked/oauth2/token')
    expect(token.statusCode, token.body).toBe(200)
    const asHooked = { authorization: `Bearer ${token.json().access_token as string}` }

    const other = await Receiver.start()
    try {
      await subscribe(app, { events: ['agent.created'] })
      const theirs = await app.inject({ method: 'POST', url: '/o/hooked/api/v1/webhooks', headers: asHooked, payload: { url: other.url, events: ['agent.created'] } })
      expect(theirs.statusCode, theirs.body).toBe(201)
      const listed = await app.inject({ method: 'GET', url: '/o/hooked/api/v1/webhooks', headers: asHooked })
      expect(listed.json().items.map((item: { id: string }) => item.id)).toEqual([theirs.json().id])
      expect((await app.inject({ method: 'GET', url: `/api/v1/webhooks/${theirs.json().id as string}`, headers: await authHeaders(app) })).statusCode).toBe(404)

      expect((await app.inject({ method: 'POST', url: '/o/hooked/api/v1/agents', headers: asHooked, payload: { name: 'in hooked' } })).statusCode).toBe(201)
      await createAgent(app, { name: 'in default' })
      await other.until((received) => received.length >= 1)
      await receiver.until((received) => received.length >= 1)
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(other.received.map((request) => request.json.data.name)).toEqual(['in hooked'])
      expect(receiver.received.map((request) => request.json.data.name)).toEqual(['in default'])
      expect(() => verify(theirs.json().secret, other.received[0]!)).not.toThrow()

      const platform = await authHeaders(app)
      expect((await app.inject({ method: 'PATCH', url: `/api/v1/organizations/${org.id}`, headers: platform, payload: { status: 'suspended' } })).statusCode).toBe(200)
      expect((await app.inject({ method: 'DELETE', url: `/api/v1/organizations/${org.id}`, headers: platform })).statusCode).toBe(204)
      const [left] = await ownerSql(app)<Array<{ n: number }>>`select count(*)::int as n from webhook_subscriptions where org_id = ${org.id}`
      expect(left?.n).toBe(0)
    } finally {
      await other.close()
    }
  })
})

describe('which organizations the worker visits', () => {
  /** organizations.has_enabled_webhooks (sql/0019): whether the worker visits the organization. */
  async function flagged (app: App, orgId = DEFAULT_ORG_ID): Promise<boolean> {
    const [row] = await ownerSql(app)<Array<{ has_enabled_webhooks: boolean }>>`select has_enabled_webhooks from organizations where id = ${orgId}`
    return row?.has_enabled_webhooks as boolean
  }

  /** Deletes the default organization's subscriptions (earlier tests of this file made some), through the API. */
  async function unsubscribeAll (app: App): Promise<void> {
    const listed = await app.inject({ method: 'GET', url: '/api/v1/webhooks', headers: await authHeaders(app) })
    for (const { id } of listed.json().items as Array<{ id: string }>) {
      expect((await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app) })).statusCode).toBe(204)
    }
  }

  async function patch (app: App, id: string, enabled: boolean): Promise<void> {
    const response = await app.inject({ method: 'PATCH', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app), payload: { enabled } })
    expect(response.statusCode, response.body).toBe(200)
  }

  it('organizations.has_enabled_webhooks follows creation, disabling, enabling, deletion and the worker\'s own disabling (410)', async () => {
    const app = await context.build()
    await unsubscribeAll(app)
    expect(await flagged(app)).toBe(false)
    const a = await subscribe(app, { events: ['agent.created'] })
    expect(await flagged(app)).toBe(true)
    const b = await subscribe(app, { events: ['agent.created'] })
    await patch(app, a.id, false)
    expect(await flagged(app)).toBe(true)
    await patch(app, b.id, false)
    expect(await flagged(app)).toBe(false)
    await patch(app, a.id, true)
    expect(await flagged(app)).toBe(true)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${a.id}`, headers: await authHeaders(app) })).statusCode).toBe(204)
    expect(await flagged(app)).toBe(false)

    // The worker disables b on a 410: nothing enabled is left.
    await patch(app, b.id, true)
    expect(await flagged(app)).toBe(true)
    receiver.answers = [{ status: 410 }]
    await createAgent(app, { name: 'gone again' })
    await eventually(async () => ((await webhook(app, b.id)).enabled === false ? true : undefined))
    expect(await flagged(app)).toBe(false)
    await patch(app, b.id, true)
    expect(await flagged(app)).toBe(true)
  })

  it('a timer round opens no transaction for organizations without an enabled subscription', async () => {
    const app = await context.build()
    await unsubscribeAll(app)
    // Organizations with nothing to deliver: before sql/0019 each cost a transaction every round.
    await ownerSql(app)`insert into organizations (id, slug, name) select gen_random_uuid(), 'idle-' || n, 'Idle ' || n from generate_series(1, 300) as n`
    const rounds = async (count: number): Promise<{ rounds: number, organizationsServed: number }> => {
      const before = { ...app.webhookWorker.stats }
      await eventually(async () => (app.webhookWorker.stats.rounds - before.rounds >= count ? true : undefined))
      return { rounds: app.webhookWorker.stats.rounds - before.rounds, organizationsServed: app.webhookWorker.stats.organizationsServed - before.organizationsServed }
    }
    // Rounds run one after another and are counted as they end: once one has ended, none began before the idle state.
    await rounds(1)
    expect((await rounds(5)).organizationsServed).toBe(0)

    // One subscription: the next rounds visit its organization, and it only.
    const { id } = await subscribe(app, { events: ['agent.created'] })
    const served = await rounds(5)
    expect(served.organizationsServed).toBeGreaterThan(0)
    expect(served.organizationsServed).toBeLessThanOrEqual(served.rounds)
    await createAgent(app, { name: 'after the idle ones' })
    await receiver.until((received) => received.some((request) => request.json.data.name === 'after the idle ones'))
    await app.inject({ method: 'DELETE', url: `/api/v1/webhooks/${id}`, headers: await authHeaders(app) })
  })

  it('deleting an organization while one of its subscriptions is being disabled: both go through, no deadlock (real PostgreSQL only: PGlite has one session)', async (test) => {
    context.requireServerDatabase(test)
    const app = await context.build()
    const platform = await authHeaders(app)
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: platform, payload: { slug: 'racing', name: 'Racing' } })
    expect(created.statusCode, created.body).toBe(201)
    const org = created.json() as { id: string, admin: { client_id: string, client_secret: string } }
    const token = await requestToken(app, org.admin.client_id, org.admin.client_secret, {}, undefined, '/o/racing/oauth2/token')
    const asRacing = { authorization: `Bearer ${token.json().access_token as string}` }
    const subscribed = await app.inject({ method: 'POST', url: '/o/racing/api/v1/webhooks', headers: asRacing, payload: { url: receiver.url, events: ['agent.created'] } })
    expect(subscribed.statusCode, subscribed.body).toBe(201)
    const id = subscribed.json().id as string
    expect(await flagged(app, org.id)).toBe(true)
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/organizations/${org.id}`, headers: platform, payload: { status: 'suspended' } })).statusCode).toBe(200)

    // As the worker disables a subscription: the subscription locked first, its organization's row (the trigger) next.
    let held = (): void => {}
    const holding = new Promise<void>((resolve) => { held = resolve })
    const disabling = inOrganization(app.sql, org.id, async (tx) => {
      await findSubscription(tx, id, true)
      held()
      await tx`select pg_sleep(0.3)`
      await updateSubscription(tx, id, { enabled: false, disabled_reason: 'gone' })
    })
    await holding
    const deleted = await app.inject({ method: 'DELETE', url: `/api/v1/organizations/${org.id}`, headers: platform })
    await disabling
    expect(deleted.statusCode, deleted.body).toBe(204)
    const [left] = await ownerSql(app)<Array<{ n: number }>>`select count(*)::int as n from webhook_subscriptions where org_id = ${org.id}`
    expect(left?.n).toBe(0)
    expect(await flagged(app, org.id)).toBe(false)
  })

  it('enabling one subscription while another is disabled leaves the flag set, however the two interleave (real PostgreSQL only: PGlite has one session)', async (test) => {
    context.requireServerDatabase(test)
    const app = await context.build()
    await unsubscribeAll(app)
    const one = await subscribe(app, { events: ['agent.created'] })
    const two = await subscribe(app, { events: ['agent.created'] })
    await patch(app, two.id, false)
    // Each transaction stays open a moment after its change: the other one's trigger runs meanwhile.
    const setEnabled = async (id: string, enabled: boolean): Promise<void> => {
      await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => {
        await updateSubscription(tx, id, { enabled })
        await tx`select pg_sleep(${Math.random() * 0.01})`
      })
    }
    for (let round = 0; round < 40; round += 1) {
      const [enabling, disabling] = round % 2 === 0 ? [two.id, one.id] : [one.id, two.id]
      await Promise.all([setEnabled(enabling, true), setEnabled(disabling, false)])
      expect(await flagged(app), `round ${round}`).toBe(true)
    }
    await unsubscribeAll(app)
  })
})
