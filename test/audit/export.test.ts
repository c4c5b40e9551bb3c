import { DEFAULT_ORG_ID } from '../../src/database.js'
import { get as httpGet, type IncomingMessage } from 'node:http'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { GENESIS_HASH, hashEvent, verifyChain } from '../../plugins/audit/index.js'
import type { AuditEventItem } from '../../schemas/audit.js'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { AdminScope } from '../../src/scopes.js'
import { mintAccessToken } from '../support/audit-tokens.js'
import { ownerSql, setupTestContext } from '../helper.js'

const context = setupTestContext()
const SEEDED = 50_000

// A collection on demand, so the heap is measured as what is live, not as garbage not yet collected.
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

/** Appends `count` token.issued events straight into the table, chained and hashed as the appender would, 1 ms apart. */
async function seedChain (app: App, count: number): Promise<void> {
  const [last] = await ownerSql(app)<Array<{ seq: string, hash: string, occurred_at: Date }>>`select seq, hash, occurred_at from audit_events order by seq desc limit 1`
  let seq = BigInt(last?.seq ?? 0)
  let prevHash = last?.hash ?? GENESIS_HASH
  let at = last?.occurred_at.getTime() ?? Date.now()
  for (let done = 0; done < count; done += 2000) {
    const rows = Array.from({ length: Math.min(2000, count - done) }, (_, n) => {
      seq += 1n
      at += 1
      const row = {
        seq: seq.toString(), id: newId(), occurred_at: new Date(at), type: 'token.issued', agent_id: newId(), actor: `client-${n % 50}`,
        ip: '10.0.0.1', request_id: `seed-${seq}`, data: { jti: newId(), scope: 'agents:read', n: done + n }, prev_hash: prevHash
      }
      prevHash = hashEvent(row)
      return { ...row, data: ownerSql(app).json(row.data), hash: prevHash }
    })
    await ownerSql(app)`insert into audit_events ${ownerSql(app)(rows as never)}`
  }
}

/** Reads the export as a client would, line by line, checking each hash and link as it goes, holding nothing. */
async function consume (stream: Readable, onChunk: () => void): Promise<{ lines: number, chunks: number, first?: AuditEventItem, last?: AuditEventItem, broken?: string }> {
  let chunks = 0
  stream.on('data', () => { chunks += 1; onChunk() })
  const result: { lines: number, chunks: number, first?: AuditEventItem, last?: AuditEventItem, broken?: string } = { lines: 0, chunks: 0 }
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    const item = JSON.parse(line) as AuditEventItem
    if (hashEvent({ ...item, occurred_at: new Date(item.occurred_at) }) !== item.hash) result.broken ??= `hash of seq ${item.seq}`
    if (result.last !== undefined && (item.prev_hash !== result.last.hash || item.seq !== result.last.seq + 1)) result.broken ??= `link at seq ${item.seq}`
    result.first ??= item
    result.last = item
    result.lines += 1
  }
  return { ...result, chunks }
}

async function exportOf (app: App, query: string) {
  const token = await mintAccessToken(app, AdminScope.AuditRead)
  return await app.inject({ method: 'GET', url: `/api/v1/audit-events/export${query}`, headers: { authorization: `Bearer ${token}` }, payloadAsStream: true })
}

describe('GET /api/v1/audit-events/export', () => {
  it(`streams ${SEEDED} events as NDJSON in chain order, in chunks, without holding them, every line verifying`, async () => {
    const app = await context.build()
    await seedChain(app, SEEDED)
    const [{ count }] = await ownerSql(app)<[{ count: number }]>`select count(*)::int as count from audit_events`
    const token = await mintAccessToken(app, AdminScope.AuditRead)
    // Over a real socket, so the client's pace pushes back on the server as it would in production.
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    collectGarbage()
    const baseline = process.memoryUsage().heapUsed
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      httpGet(`${address}/api/v1/audit-events/export`, { headers: { authorization: `Bearer ${token}` } }, resolve).on('error', reject)
    })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^application\/x-ndjson/)

    let peak = baseline
    let seen = 0
    const result = await consume(response, () => {
      seen += 1
      if (seen % 25 === 0) {
        collectGarbage()
        peak = Math.max(peak, process.memoryUsage().heapUsed)
      }
    })

    expect(result.broken).toBeUndefined()
    expect(result.lines).toBe(count)
    expect(result.first).toMatchObject({ seq: 1, prev_hash: GENESIS_HASH })
    // Streamed, not built whole: many chunks, and what stayed live never came near the export's size.
    expect(result.chunks).toBeGreaterThan(50)
    const exportBytes = count * 400
    console.info(`[export] ${count} events, ${result.chunks} chunks, live heap peak +${((peak - baseline) / 1e6).toFixed(1)} MB for ~${Math.round(exportBytes / 1e6)} MB exported`)
    expect(peak - baseline).toBeLessThan(exportBytes / 3)
  })

  it('exports a time range only, with since inclusive and until exclusive, its first line linking to the event before', async () => {
    const app = await context.build()
    const [from, to] = await ownerSql(app)<Array<{ seq: string, occurred_at: Date, prev_hash: string }>>`select seq, occurred_at, prev_hash from audit_events where seq in (101, 201) order by seq`
    if (from === undefined || to === undefined) throw new Error('the seeded chain is shorter than expected')
    const response = await exportOf(app, `?since=${from.occurred_at.toISOString()}&until=${to.occurred_at.toISOString()}`)
    expect(response.statusCode).toBe(200)
    const result = await consume(response.stream(), () => {})
    expect(result.broken).toBeUndefined()
    const expected = await ownerSql(app)<[{ count: number }]>`select count(*)::int as count from audit_events where occurred_at >= ${from.occurred_at} and occurred_at < ${to.occurred_at}`
    expect(result.lines).toBe(expected[0].count)
    expect(result.first).toMatchObject({ seq: 101, prev_hash: from.prev_hash })
    expect(result.last?.seq).toBe(200)
  })

  it('releases its database connection when the client hangs up half-way', async () => {
    // On PGlite the app has one connection: a cursor left open would make every later query wait forever.
    const app = await context.build({ DATABASE_POOL_SIZE: '1' })
    await seedChain(app, 3000)
    const token = await mintAccessToken(app, AdminScope.AuditRead)
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    await new Promise<void>((resolve, reject) => {
      const request = httpGet(`${address}/api/v1/audit-events/export`, { headers: { authorization: `Bearer ${token}` } }, (response) => {
        response.once('data', () => { request.destroy(); resolve() })
      })
      request.on('error', (error) => { if (!request.destroyed) reject(error) })
    })
    const page = await app.inject({ method: 'GET', url: '/api/v1/audit-events?limit=1', headers: { authorization: `Bearer ${token}` } })
    expect(page.statusCode).toBe(200)
    expect(page.json().items).toHaveLength(1)
  })

  it('answers 400 for a bad range and 403 without audit:read', async () => {
    const app = await context.build()
    expect((await exportOf(app, '?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z')).statusCode).toBe(400)
    expect((await exportOf(app, '?until=soon')).statusCode).toBe(400)
    const token = await mintAccessToken(app, AdminScope.AgentsRead)
    expect((await app.inject({ method: 'GET', url: '/api/v1/audit-events/export', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(403)
  })

  it('leaves a chain audit:verify accepts', async () => {
    const app = await context.build()
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })
})
