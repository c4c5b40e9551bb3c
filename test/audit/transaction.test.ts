import { DEFAULT_ORG_ID } from '../../src/database.js'
import { once } from 'node:events'
import { describe, expect, it } from 'vitest'
import { verifyChain, type AuditEvent } from '../../plugins/audit/index.js'
import { newId } from '../../src/ids.js'
import type { App } from '../../src/app.js'
import { ownerSql, setupTestContext, withSql } from '../helper.js'
import { authHeaders, createAgent } from '../support/management.js'

const context = setupTestContext()

// The chain lock of plugins/audit/chain.ts.
// The chain lock of plugins/audit/chain.ts: one per organization, (this key, the hash of its id).
const AUDIT_CHAIN_LOCK_KEY = 7_331_001

async function headSeq (app: App): Promise<string> {
  const [row] = await ownerSql(app)<Array<{ seq: string }>>`select coalesce(max(seq), 0)::text as seq from audit_events`
  return (row as { seq: string }).seq
}

function marked (requestId: string): AuditEvent {
  return { type: 'agent.updated', orgId: DEFAULT_ORG_ID, actor: 'test', requestId, data: { fields: ['name'] } }
}

describe('events in the transaction of their change', () => {
  it('an event appended in a transaction that rolls back is gone with it, and its seq is reused', async () => {
    const app = await context.build()
    await app.ready()
    const before = await headSeq(app)
    const requestId = `rolled-back-${newId()}`
    await expect(ownerSql(app).begin(async (tx) => {
      await app.audit.recordIn(tx, marked(requestId))
      throw new Error('the change failed after its event was appended')
    })).rejects.toThrow('the change failed')
    expect(await ownerSql(app)`select 1 from audit_events where request_id = ${requestId}`).toHaveLength(0)

    await app.audit.record(marked(`after-${requestId}`))
    expect(await headSeq(app)).toBe(String(BigInt(before) + 1n))
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('a credential whose event cannot be written is not created either', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    // A constraint on new rows only: the credential's event is refused inside the credential's transaction.
    await ownerSql(app)`alter table audit_events add constraint audit_test_refuse check (type <> 'credential.created') not valid`
    try {
      const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload: {} })
      expect(response.statusCode).toBeGreaterThanOrEqual(500)
      expect(response.body).not.toContain('client_secret')
    } finally {
      await ownerSql(app)`alter table audit_events drop constraint audit_test_refuse`
    }
    expect(await ownerSql(app)`select id from credentials where agent_id = ${agent.id}`).toHaveLength(0)
    expect(await ownerSql(app)`select 1 from audit_events where type = 'credential.created' and agent_id = ${agent.id}`).toHaveLength(0)
  })

  it('the change and its event become visible together: while the chain lock is held elsewhere, neither is', async (test) => {
    context.requireServerDatabase(test)
    const app = await context.build()
    await app.ready()
    const headers = await authHeaders(app)
    const name = `atomic-${newId()}`
    await withSql(context.database, async (other) => {
      let release!: () => void
      const released = new Promise<void>((resolve) => { release = resolve })
      // Another writer holds the chain lock: the request's transaction waits for it, its agent row not yet committed.
      const holder = other.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY}, hashtext(${DEFAULT_ORG_ID}::text))`
        await released
      })
      await expect.poll(async () => (await ownerSql(app)`select 1 from pg_locks where locktype = 'advisory' and granted`).length).toBeGreaterThan(0)
      const request = app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: { name } })
      await expect.poll(async () => (await ownerSql(app)`select 1 from pg_locks where locktype = 'advisory' and not granted`).length).toBeGreaterThan(0)

      const [seen] = await ownerSql(app)<Array<{ agents: number, events: number }>>`
        select (select count(*)::int from agents where name = ${name}) as agents,
               (select count(*)::int from audit_events where type = 'agent.created' and data->>'name' = ${name}) as events`
      expect(seen).toEqual({ agents: 0, events: 0 })

      release()
      await holder
      expect((await request).statusCode).toBe(201)
    })
    const [seen] = await ownerSql(app)<Array<{ agents: number, events: number }>>`
      select (select count(*)::int from agents where name = ${name}) as agents,
             (select count(*)::int from audit_events where type = 'agent.created' and data->>'name' = ${name}) as events`
    expect(seen).toEqual({ agents: 1, events: 1 })
  })
})

describe('a subscriber of the trail', () => {
  it('reads events after a seq in chain order, whether written in a transaction or group-committed, and is told of commits', async () => {
    const app = await context.build()
    await app.ready()
    const start = await headSeq(app)
    const announced: string[] = []
    app.audit.notifications.on('committed', (seq) => { announced.push(seq) })

    // recordIn, inside the agent's transaction: announced once that transaction has committed.
    const committed = once(app.audit.notifications, 'committed')
    const agent = await createAgent(app, { name: 'subscribed' })
    const [firstSeq] = await committed as [string]
    const requestIds = [`group-${newId()}`, `group-${newId()}`]
    await app.audit.record(...requestIds.map(marked))

    const all = await app.audit.readChain({ orgId: DEFAULT_ORG_ID, afterSeq: start, limit: 100 })
    expect(all.map((event) => event.type)).toEqual(['agent.created', 'agent.updated', 'agent.updated'])
    expect(all[0]).toMatchObject({ seq: firstSeq, agent_id: agent.id })
    expect(all.slice(1).map((event) => event.request_id)).toEqual(requestIds)
    expect(all.map((event) => BigInt(event.seq))).toEqual([1n, 2n, 3n].map((n) => BigInt(start) + n))
    expect(announced).toEqual([firstSeq, all[2]?.seq])

    // Paged on the last seq read: each event once, in order, none after the head.
    const page1 = await app.audit.readChain({ orgId: DEFAULT_ORG_ID, afterSeq: start, limit: 2 })
    const page2 = await app.audit.readChain({ orgId: DEFAULT_ORG_ID, afterSeq: (page1.at(-1) as { seq: string }).seq, limit: 2 })
    expect([...page1, ...page2].map((event) => event.id)).toEqual(all.map((event) => event.id))
    expect(await app.audit.readChain({ orgId: DEFAULT_ORG_ID, afterSeq: (all.at(-1) as { seq: string }).seq, limit: 2 })).toEqual([])
  })
})
