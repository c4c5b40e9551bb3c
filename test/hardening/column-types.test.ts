import { describe, expect, it } from 'vitest'
import { ownerSql, setupTestContext } from '../helper.js'
import { describeColumnTypes } from '../support/column-types.js'
import { authHeaders, createAgent } from '../support/management.js'

const context = setupTestContext()

// A few values of each member's column type at every endpoint; column-types.long.test.ts runs many more.
describeColumnTypes(context, Number(process.env.COLUMN_RUNS ?? 40), 120_000)

describe('what the column types found, pinned (each was a 500, or stored altered)', () => {
  it('is a 400 naming the member, with the database unchanged', async () => {
    const app = await context.build()
    const headers = { ...await authHeaders(app), 'content-type': 'application/json' }
    const id = (await createAgent(app)).id as string
    const cursor = Buffer.from('s9223372036854775808').toString('base64url')
    const cases: Array<[method: 'GET' | 'POST' | 'PATCH', url: string, body: unknown, location: string]> = [
      ['GET', `/api/v1/agents/urn:uuid:${id}`, undefined, 'params/id'],
      ['GET', `/api/v1/agents/${id.toUpperCase()}`, undefined, 'params/id'],
      ['GET', `/api/v1/audit-events?agent_id=urn:uuid:${id}`, undefined, 'querystring/agent_id'],
      ['GET', '/api/v1/audit-events?since=0000-01-01T00:00:00Z', undefined, 'querystring/since'],
      ['GET', '/api/v1/audit-events?since=2016-12-31T23:59:60Z', undefined, 'querystring/since'],
      ['GET', '/api/v1/audit-events/export?until=9999-12-31T23:59:59-23:00', undefined, 'querystring/until'],
      ['POST', `/api/v1/agents/${id}/credentials`, { expires_at: '9999-12-31T23:59:59-01:00' }, 'body/expires_at'],
      ['GET', `/api/v1/audit-events?cursor=${cursor}`, undefined, 'querystring/cursor'],
      ['GET', '/api/v1/audit-events?actor=a%00b', undefined, 'querystring/actor'],
      ['GET', '/api/v1/agents?owner=a%00b', undefined, 'querystring/owner'],
      ['POST', '/api/v1/agents', { name: 'a\u0000b' }, 'body/name'],
      ['POST', '/api/v1/agents', { name: 'a\uD800b' }, 'body/name'],
      ['POST', '/api/v1/agents', { name: 'n', description: 'x\uDC00' }, 'body/description'],
      ['PATCH', `/api/v1/agents/${id}`, { owner: '\u0000' }, 'body/owner'],
      ['POST', '/api/v1/agents', { name: 'n', metadata: { 'k\u0000': 1 } }, 'body/metadata'],
      ['PATCH', `/api/v1/agents/${id}`, { metadata: { a: { b: ['x', '\uD800'] } } }, 'body/metadata/a/b/1'],
      ['POST', '/api/v1/agents', { name: 'n', metadata: { a: JSON.parse(`${'['.repeat(3000)}${']'.repeat(3000)}`) } }, 'body/metadata/a/0/0/0/0/0/0/0']
    ]
    const before = await ownerSql(app)`select count(*)::int as n from agents`
    for (const [method, url, body, location] of cases) {
      const response = await app.inject({ method, url, headers, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) })
      expect(response.statusCode, `${method} ${url}: ${response.body}`).toBe(400)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.json().errors.map((error: { location: string }) => error.location), url).toContain(location)
    }
    expect(await ownerSql(app)`select count(*)::int as n from agents`).toEqual(before)
  })

  it('says what is wrong in words, not by quoting a pattern', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: { name: 'n', metadata: { 'k\u0000': 'v' } } })
    expect(response.json().errors).toEqual([{ location: 'body/metadata', message: 'a member name must not contain NUL (U+0000) or an unpaired surrogate' }])
    expect(response.json().detail).toBe('body/metadata a member name must not contain NUL (U+0000) or an unpaired surrogate')
  })

  it('text that is well formed is stored as sent: astral characters, U+FFFF, 8 levels of metadata', async () => {
    const app = await context.build()
    // A member name with a line break: the answer's schema once matched names with ^.*$ and dropped it (found by
    // column-types.long.test.ts), while the database kept it.
    const metadata = { a: [[[[[[['😀']]]]]]], '\uFFFF': '\uFEFF𝔘', '\u{107715}\u000b\nv': [false, -3.899801125908937e-262, null] }
    const agent = await createAgent(app, { name: '😀 bot \uFFFF', metadata })
    expect(agent).toMatchObject({ name: '😀 bot \uFFFF', metadata })
  })
})
