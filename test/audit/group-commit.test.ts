import { DEFAULT_ORG_ID } from '../../src/database.js'
import { describe, expect, it } from 'vitest'
import { verifyChain, type AuditEvent } from '../../plugins/audit/index.js'
import { newId } from '../../src/ids.js'
import { ownerSql, setupTestContext, testServerDatabaseUrl } from '../helper.js'

const context = setupTestContext()

function issued (n: number): AuditEvent {
  return { type: 'token.issued', orgId: DEFAULT_ORG_ID, actor: `client-${n}`, ip: '192.0.2.1', requestId: `req-${n}`, agentId: newId(), data: { jti: newId(), n } }
}

describe('group commit', () => {
  it('commits 200 concurrent records in far fewer transactions, every one present, the chain valid', async () => {
    const app = await context.build()
    await app.ready()
    const before = { ...app.audit.stats }
    const events = Array.from({ length: 200 }, (_, n) => issued(n))
    await Promise.all(events.map((event) => app.audit.record(event)))

    const batches = app.audit.stats.batches - before.batches
    expect(app.audit.stats.events - before.events).toBe(200)
    expect(batches).toBeGreaterThanOrEqual(1)
    expect(batches).toBeLessThanOrEqual(10)
    const stored = await ownerSql(app)<Array<{ request_id: string }>>`select request_id from audit_events where type = 'token.issued'`
    expect(new Set(stored.map((row) => row.request_id))).toEqual(new Set(events.map((event) => event.requestId)))
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('keeps each chain in the order recorded while batches overlap, a chain they share included', async () => {
    const app = await context.build()
    await app.ready()
    const orgIds = [DEFAULT_ORG_ID, newId(), newId()]
    for (const orgId of orgIds.slice(1)) await ownerSql(app)`insert into organizations (id, slug, name) values (${orgId}, ${`wave-${orgId.slice(-8)}`}, 'wave')`
    const before = { ...app.audit.stats }
    const events: AuditEvent[] = []
    const recorded: Array<Promise<void>> = []
    // Waves a turn of the event loop apart: each joins a batch started while the previous one is still in flight.
    for (let wave = 0; wave < 40; wave++) {
      for (let i = 0; i < 6; i++) {
        const event = { ...issued(events.length), requestId: `wave-${events.length}`, orgId: orgIds[(wave + i) % orgIds.length] as string }
        events.push(event)
        recorded.push(app.audit.record(event))
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
    await Promise.all(recorded)
    expect(app.audit.stats.events - before.events).toBe(events.length)
    // The first batch is the first wave alone (the drain starts a turn after the first record, before the second
    // wave), and the next starts while it is in flight: at least two batches whatever the machine's speed, each
    // writing every organization's chain.
    expect(app.audit.stats.batches - before.batches).toBeGreaterThanOrEqual(2)
    for (const orgId of orgIds) {
      const stored = await ownerSql(app)<Array<{ request_id: string }>>`select request_id from audit_events where org_id = ${orgId} and request_id like 'wave-%' order by seq`
      expect(stored.map((row) => row.request_id)).toEqual(events.filter((event) => event.orgId === orgId).map((event) => event.requestId))
      expect(await verifyChain(ownerSql(app), orgId)).toMatchObject({ ok: true })
    }
  })

  it('commits the records of many organizations together, each to its own chain, in few transactions', async () => {
    const app = await context.build()
    await app.ready()
    const orgIds = [DEFAULT_ORG_ID, newId(), newId(), newId()]
    for (const orgId of orgIds.slice(1)) await ownerSql(app)`insert into organizations (id, slug, name) values (${orgId}, ${`batch-${orgId.slice(-8)}`}, 'batch')`
    const before = { ...app.audit.stats }
    const events = Array.from({ length: 120 }, (_, n) => ({ ...issued(n), requestId: `multi-${n}`, orgId: orgIds[n % orgIds.length] as string }))
    await Promise.all(events.map((event) => app.audit.record(event)))
    expect(app.audit.stats.batches - before.batches).toBeLessThanOrEqual(10)
    for (const orgId of orgIds) {
      const stored = await ownerSql(app)<Array<{ request_id: string }>>`select request_id from audit_events where org_id = ${orgId} and request_id like 'multi-%' order by seq`
      expect(stored.map((row) => row.request_id)).toEqual(events.filter((event) => event.orgId === orgId).map((event) => event.requestId))
      expect(await verifyChain(ownerSql(app), orgId)).toMatchObject({ ok: true })
    }
  })

  it('stores data whose members are named like the driver\'s typed parameters (type, value), group-committed or in a transaction', async () => {
    const app = await context.build()
    await app.ready()
    const data = { type: 'private_key_jwt', value: 1, nested: { type: 'x' } }
    await app.audit.record({ ...issued(1), orgId: DEFAULT_ORG_ID, actor: 'typed-1', data })
    await ownerSql(app).begin(async (tx) => { await app.audit.recordIn(tx, { ...issued(2), orgId: DEFAULT_ORG_ID, actor: 'typed-2', data }) })
    const stored = await ownerSql(app)<Array<{ data: unknown }>>`select data from audit_events where actor in ('typed-1', 'typed-2') order by seq`
    expect(stored.map((row) => row.data)).toEqual([data, data])
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('resolves a record only once its event is committed', async () => {
    const app = await context.build()
    const requestId = `durable-${newId()}`
    await app.audit.record({ ...issued(1), requestId })
    // Read through another path than the appender: the row is there the moment record() resolved.
    const [row] = await ownerSql(app)`select type, actor from audit_events where request_id = ${requestId}`
    expect(row).toEqual({ type: 'token.issued', actor: 'client-1' })
  })

  it('keeps the events of one record together, in order, in one transaction', async () => {
    const app = await context.build()
    const requestId = `together-${newId()}`
    await app.audit.record(
      { type: 'agent.created', orgId: DEFAULT_ORG_ID, actor: 'admin', requestId, data: { step: 1 } },
      { type: 'credential.created', orgId: DEFAULT_ORG_ID, actor: 'admin', requestId, data: { step: 2 } }
    )
    const rows = await ownerSql(app)<Array<{ type: string, seq: string }>>`select type, seq from audit_events where request_id = ${requestId} order by seq`
    expect(rows.map((row) => row.type)).toEqual(['agent.created', 'credential.created'])
    expect(BigInt(rows[1]!.seq) - BigInt(rows[0]!.seq)).toBe(1n)
  })

  it('rejects every record of a batch that fails, and commits the next batch', async () => {
    const app = await context.build()
    await app.ready()
    // A constraint the database enforces on new rows only: the batch holding the refused row fails as a whole.
    await ownerSql(app)`alter table audit_events add constraint audit_test_refuse check (actor <> 'refused') not valid`
    const batchesBefore = app.audit.stats.batches
    const sameBatch = [app.audit.record(issued(1)), app.audit.record({ ...issued(2), orgId: DEFAULT_ORG_ID, actor: 'refused' }), app.audit.record(issued(3))]
    const outcomes = await Promise.allSettled(sameBatch)
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected', 'rejected'])
    expect(app.audit.stats.batches).toBe(batchesBefore)
    await ownerSql(app)`alter table audit_events drop constraint audit_test_refuse`

    const requestId = `after-failure-${newId()}`
    await app.audit.record({ ...issued(4), requestId })
    const [{ count }] = await ownerSql(app)<[{ count: number }]>`select count(*)::int as count from audit_events where request_id = ${requestId}`
    expect(count).toBe(1)
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('refuses an event that could never be stored without failing the others of its batch', async () => {
    const app = await context.build()
    const good = app.audit.record(issued(7))
    const bad = app.audit.record({ ...issued(8), agentId: 'not-a-uuid' })
    await expect(bad).rejects.toThrow(/agentId must be a UUID/)
    await expect(good).resolves.toBeUndefined()
  })

  it('hashes exactly what PostgreSQL reads back: unicode, NUL, lone surrogates, numbers, key order, upper-case UUIDs', async () => {
    const app = await context.build()
    await app.audit.record({
      type: 'agent.updated',
      orgId: DEFAULT_ORG_ID, actor: 'ünïcødé 🔑 \u0000 actor',
      ip: '2001:db8::1',
      requestId: 'r\uD800x',
      agentId: newId().toUpperCase(),
      data: {
        z: 1, a: { y: [1.5, -0, 1e21, 0.1 + 0.2, 2 ** 60, Number.NaN, null, true], x: 'é\u0000\uDC00' },
        when: new Date(1_700_000_000_123),
        skipped: undefined,
        '\u0000key': 'value',
        nested: { deeper: { list: [{ b: 2, a: 1 }] } }
      }
    })
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('commits what is still queued when the app closes', async () => {
    const app = await context.build()
    await app.ready()
    const requestId = `at-close-${newId()}`
    const pending = Promise.all(Array.from({ length: 20 }, (_, n) => app.audit.record({ ...issued(n), requestId })))
    await app.close()
    await pending
    const again = await context.build()
    const [{ count }] = await ownerSql(again)<[{ count: number }]>`select count(*)::int as count from audit_events where request_id = ${requestId}`
    expect(count).toBe(20)
  })

  // PGlite has a single session: two apps on it would interleave transactions, so only a server can show this.
  it.skipIf(testServerDatabaseUrl() === undefined)('keeps one valid chain when two replicas write at once (real PostgreSQL only: PGlite has one session)', async () => {
    const [one, two] = [await context.build(), await context.build()]
    await Promise.all([one.ready(), two.ready()])
    const requestId = `replicas-${newId()}`
    await Promise.all(Array.from({ length: 300 }, (_, n) => (n % 2 === 0 ? one : two).audit.record({ ...issued(n), requestId })))
    const [{ count }] = await ownerSql(one)<[{ count: number }]>`select count(*)::int as count from audit_events where request_id = ${requestId}`
    expect(count).toBe(300)
    expect(one.audit.stats.batches).toBeGreaterThan(0)
    expect(two.audit.stats.batches).toBeGreaterThan(0)
    expect(await verifyChain(ownerSql(one), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })
})
