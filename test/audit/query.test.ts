import { DEFAULT_ORG_ID } from '../../src/database.js'
import { beforeAll, describe, expect, it } from 'vitest'
import { hashEvent, type AuditEvent } from '../../plugins/audit/index.js'
import type { AuditEventItem } from '../../schemas/audit.js'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { AdminScope } from '../../src/scopes.js'
import { mintAccessToken } from '../support/audit-tokens.js'
import { ownerSql, setupTestContext } from '../helper.js'

const context = setupTestContext()

const agents = [newId(), newId()]
const types = ['token.issued', 'auth.failed', 'agent.created'] as const

interface Row { id: string, seq: string, type: string, agent_id: string | null, actor: string, occurred_at: Date }

async function allRows (app: App): Promise<Row[]> {
  return await ownerSql(app)<Row[]>`select id, seq, type, agent_id, actor, occurred_at from audit_events order by seq desc`
}

async function get (app: App, query: string, scope: string = AdminScope.AuditRead): Promise<{ status: number, body: any, headers: Record<string, unknown> }> {
  const token = await mintAccessToken(app, scope)
  const response = await app.inject({ method: 'GET', url: `/api/v1/audit-events${query}`, headers: { authorization: `Bearer ${token}` } })
  return { status: response.statusCode, body: response.json(), headers: response.headers }
}

/** Every page of a query, following next_cursor. */
async function allPages (app: App, query: string): Promise<AuditEventItem[]> {
  const items: AuditEventItem[] = []
  let cursor: string | null = null
  do {
    const separator = query === '' ? '?' : '&'
    const page = await get(app, `${query}${cursor === null ? '' : `${query === '' ? '?' : separator}cursor=${cursor}`}`)
    expect(page.status).toBe(200)
    items.push(...page.body.items)
    cursor = page.body.next_cursor
  } while (cursor !== null)
  return items
}

beforeAll(async () => {
  const app = await context.build()
  // Several batches, so occurred_at takes several values to filter on.
  for (let round = 0; round < 6; round += 1) {
    const events: AuditEvent[] = Array.from({ length: 7 }, (_, n) => ({
      type: types[(round + n) % 3] as AuditEvent['type'],
      orgId: DEFAULT_ORG_ID, actor: n % 2 === 0 ? 'client-even' : 'client-odd',
      agentId: agents[n % 2],
      ip: '203.0.113.9',
      requestId: `seed-${round}-${n}`,
      data: { round, n }
    }))
    await app.audit.record(...events)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await app.close()
})

describe('GET /api/v1/audit-events', () => {
  it('pages through every event once, newest first', async () => {
    const app = await context.build()
    const expected = await allRows(app)
    const items = await allPages(app, '?limit=4')
    expect(items.map((item) => item.id)).toEqual(expected.map((row) => row.id))
    expect(items.map((item) => item.seq)).toEqual([...items.map((item) => item.seq)].sort((a, b) => b - a))
  })

  it('returns each event with its chain fields, hashes that verify', async () => {
    const app = await context.build()
    const { status, body } = await get(app, '?limit=500')
    expect(status).toBe(200)
    const item = body.items.find((candidate: AuditEventItem) => candidate.request_id === 'seed-0-0') as AuditEventItem
    expect(item).toMatchObject({ type: 'token.issued', agent_id: agents[0], actor: 'client-even', ip: '203.0.113.9', data: { round: 0, n: 0 } })
    for (const each of body.items as AuditEventItem[]) {
      expect(hashEvent({ ...each, occurred_at: new Date(each.occurred_at) })).toBe(each.hash)
    }
    expect(body.next_cursor).toBeNull()
  })

  it('filters by one type, several types (repeated and comma-separated), agent and actor', async () => {
    const app = await context.build()
    const rows = await allRows(app)
    const ids = (keep: (row: Row) => boolean): string[] => rows.filter(keep).map((row) => row.id)

    expect((await allPages(app, '?type=auth.failed&limit=3')).map((item) => item.id)).toEqual(ids((row) => row.type === 'auth.failed'))
    const several = ids((row) => row.type === 'auth.failed' || row.type === 'agent.created')
    expect((await allPages(app, '?type=auth.failed&type=agent.created&limit=5')).map((item) => item.id)).toEqual(several)
    expect((await allPages(app, '?type=auth.failed,agent.created&limit=5')).map((item) => item.id)).toEqual(several)
    expect((await allPages(app, `?agent_id=${agents[1]}&limit=5`)).map((item) => item.id)).toEqual(ids((row) => row.agent_id === agents[1]))
    expect((await allPages(app, '?actor=client-odd&limit=5')).map((item) => item.id)).toEqual(ids((row) => row.actor === 'client-odd'))
    const combined = await allPages(app, `?type=token.issued&agent_id=${agents[0]}&actor=client-even&limit=2`)
    expect(combined.length).toBeGreaterThan(0)
    expect(combined.map((item) => item.id)).toEqual(ids((row) => row.type === 'token.issued' && row.agent_id === agents[0] && row.actor === 'client-even'))
  })

  it('filters by time: since inclusive, until exclusive', async () => {
    const app = await context.build()
    const rows = await allRows(app)
    const instants = [...new Set(rows.map((row) => row.occurred_at.getTime()))].sort((a, b) => a - b)
    expect(instants.length).toBeGreaterThanOrEqual(4)
    const since = new Date(instants[1] as number)
    const until = new Date(instants[instants.length - 2] as number)
    const inRange = rows.filter((row) => row.occurred_at >= since && row.occurred_at < until).map((row) => row.id)
    expect(inRange.length).toBeGreaterThan(0)
    const items = await allPages(app, `?since=${since.toISOString()}&until=${encodeURIComponent(until.toISOString())}&limit=3`)
    expect(items.map((item) => item.id)).toEqual(inRange)
    expect((await get(app, `?since=${new Date(Date.now() + 86_400_000).toISOString()}`)).body).toEqual({ items: [], next_cursor: null })
    // An offset other than Z means the same instant.
    const offset = since.toISOString().replace('Z', '+00:00')
    expect((await allPages(app, `?since=${encodeURIComponent(offset)}&limit=500`)).length).toBe(rows.filter((row) => row.occurred_at >= since).length)
  })

  it('answers 400 problem+json for bad filters', async () => {
    const app = await context.build()
    for (const query of ['?limit=0', '?limit=501', '?limit=ten', '?type=token.minted', '?type=Token', '?agent_id=42', '?since=yesterday',
      '?since=2024-01-01T00:00:00', '?cursor=not-a-cursor', `?since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z`]) {
      const response = await get(app, query)
      expect({ query, status: response.status }).toEqual({ query, status: 400 })
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.body).toMatchObject({ status: 400, title: 'Bad Request' })
    }
  })

  it('answers 401 without a valid token (and records auth.failed), 403 without audit:read', async () => {
    const app = await context.build()
    const anonymous = await app.inject({ method: 'GET', url: '/api/v1/audit-events', headers: { 'x-request-id': 'no-token-request' } })
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer/)
    const [failed] = await ownerSql(app)`select type, actor from audit_events where request_id = 'no-token-request'`
    expect(failed).toEqual({ type: 'auth.failed', actor: 'anonymous' })

    const forged = await app.inject({ method: 'GET', url: '/api/v1/audit-events', headers: { authorization: 'Bearer abc.def.ghi' } })
    expect(forged.statusCode).toBe(401)

    const wrongScope = await get(app, '', AdminScope.AgentsRead)
    expect(wrongScope.status).toBe(403)
    expect(wrongScope.headers['content-type']).toMatch(/^application\/problem\+json/)
  })

  it('is rate limited like the rest of the management API', async () => {
    const app = await context.build({ RATE_LIMIT_API_PER_MIN: '2' })
    const token = await mintAccessToken(app, AdminScope.AuditRead)
    // An address of its own, so the requests of the other tests do not count against it.
    const request = { method: 'GET' as const, url: '/api/v1/audit-events?limit=1', remoteAddress: '192.0.2.77', headers: { authorization: `Bearer ${token}` } }
    const statuses = []
    for (let n = 0; n < 3; n += 1) statuses.push((await app.inject(request)).statusCode)
    expect(statuses).toEqual([200, 200, 429])
  })

  it('documents both routes in the OpenAPI document', async () => {
    const app = await context.build()
    const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
    expect(document.paths['/api/v1/audit-events'].get.security).toEqual([{ bearerAuth: [] }])
    expect(Object.keys(document.paths['/api/v1/audit-events/export'].get.responses['200'].content)).toEqual(['application/x-ndjson'])
  })
})
