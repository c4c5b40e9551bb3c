import type { LookupFunction } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AUDIT_EVENT_TYPES } from '../../plugins/audit/public.js'
import type { App } from '../../src/app.js'
import { ADMIN_SCOPES, AdminScope } from '../../src/scopes.js'
import { auditEvents, authHeaders, createAgent } from '../support/management.js'
import { setupTestContext } from '../helper.js'
import { eventually, Receiver, verify, type Received } from './receiver.js'

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

const ofType = (type: string) => (received: Received[]) => received.some((request) => request.json.type === type)

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

    const rows = await app.sql`select * from webhook_subscriptions`
    expect(JSON.stringify(rows)).not.toContain(created.secret.slice(6))
    expect(String(rows[0]?.secret_sealed)).toMatch(/^v1\./)
    const events = await auditEvents(app, 'webhook.created')
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
    for (const type of AUDIT_EVENT_TYPES) await app.audit.record({ type, actor: 'test', data: { n: type } })
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

    const listed = await deliveries(app, id)
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
})
