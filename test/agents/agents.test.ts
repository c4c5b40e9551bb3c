import { describe, expect, it } from 'vitest'
import { agentChangedKey, credentialChangedKey } from '../../plugins/revocation/keys.js'
import { AdminScope } from '../../src/scopes.js'
import { monthlyUsageKey } from '../../plugins/tokens/usage-keys.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()

// Nothing listens here: a Redis that is down for the whole life of the app.
const DEAD_REDIS = 'redis://127.0.0.1:1'

function expectProblem (response: { statusCode: number, headers: Record<string, unknown>, json: () => any }, status: number): any {
  expect(response.statusCode).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  const body = response.json()
  expect(body.status).toBe(status)
  return body
}

describe('POST /api/v1/agents', () => {
  it('registers an active agent with a client_id and records agent.created', async () => {
    const app = await context.build()
    const response = await app.inject({
      method: 'POST',
      url: '/api/v1/agents',
      headers: await authHeaders(app, [AdminScope.AgentsWrite], 'ops-admin'),
      payload: { name: 'weather bot', description: 'forecasts', owner: 'team-weather', scopes: ['weather:read', 'weather:write'], metadata: { env: 'prod', tier: 2 } }
    })
    expect(response.statusCode).toBe(201)
    const agent = response.json()
    expect(agent).toMatchObject({
      name: 'weather bot', description: 'forecasts', owner: 'team-weather', scopes: ['weather:read', 'weather:write'],
      status: 'active', metadata: { env: 'prod', tier: 2 }
    })
    expect(agent.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/)
    expect(agent.client_id).toMatch(/^agt_[A-Za-z0-9_-]{22}$/)
    expect(new Date(agent.created_at).getTime()).toBeGreaterThan(Date.now() - 60_000)
    expect(response.headers.location).toBe(`/api/v1/agents/${agent.id}`)

    const [event] = (await auditEvents(app, 'agent.created')).filter((e) => e.agent_id === agent.id)
    expect(event).toMatchObject({ actor: 'ops-admin', data: { client_id: agent.client_id, name: 'weather bot', scopes: ['weather:read', 'weather:write'] } })
  })

  it('defaults the optional members', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'minimal' })
    expect(agent).toMatchObject({ description: null, owner: null, scopes: [], metadata: {}, status: 'active' })
  })

  it.each([
    ['no name', {}, 'body'],
    ['an empty name', { name: '' }, 'body/name'],
    ['a name over 128 characters', { name: 'x'.repeat(129) }, 'body/name'],
    ['a scope with a space', { name: 'a', scopes: ['weather read'] }, 'body/scopes/0'],
    ['a scope with a double quote', { name: 'a', scopes: ['we"ather'] }, 'body/scopes/0'],
    ['the same scope twice', { name: 'a', scopes: ['x', 'x'] }, 'body/scopes'],
    ['metadata that is not an object', { name: 'a', metadata: ['x'] }, 'body/metadata'],
    ['metadata with 33 keys', { name: 'a', metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i])) }, 'body/metadata'],
    ['metadata over 8 KB as JSON', { name: 'a', metadata: { blob: 'x'.repeat(8200) } }, 'body/metadata']
  ])('refuses %s with a 400 naming the member', async (_case, payload, location) => {
    const app = await context.build()
    const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload })
    const problem = expectProblem(response, 400)
    expect(problem.errors[0].location).toBe(location)
  })

  it('answers a body that is not JSON with a 400, not a 5xx', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { ...await authHeaders(app), 'content-type': 'application/json' }, payload: '{"name":' })
    expectProblem(response, 400)
  })
})

describe('authentication and scopes', () => {
  const routes = (id: string): Array<[string, string, unknown?]> => [
    ['POST', '/api/v1/agents', { name: 'a' }],
    ['GET', '/api/v1/agents'],
    ['GET', `/api/v1/agents/${id}`],
    ['PATCH', `/api/v1/agents/${id}`, { name: 'b' }],
    ['DELETE', `/api/v1/agents/${id}`],
    ['GET', `/api/v1/agents/${id}/usage`]
  ]

  it('answers 401 with WWW-Authenticate: Bearer without a token, on every route', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    for (const [method, url, payload] of routes(agent.id)) {
      const response = await app.inject({ method: method as 'GET', url, payload: payload as object })
      expectProblem(response, 401)
      expect(response.headers['www-authenticate'], `${method} ${url}`).toMatch(/^Bearer realm="agentidp"/)
    }
  })

  it('answers 401 for an expired token, a token for another audience and a token signed by another key', async () => {
    const app = await context.build()
    const { generateKeyPairSync } = await import('node:crypto')
    const { SignJWT } = await import('jose')
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const foreign = await new SignJWT({ client_id: 'x', scope: AdminScope.AgentsRead })
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.current.kid })
      .setIssuer(app.config.issuer).setSubject('x').setAudience(app.config.issuer).setIssuedAt().setExpirationTime('5m').setJti('j')
      .sign(other.privateKey)
    const tokens = [
      await mintAccessToken(app, { scopes: [AdminScope.AgentsRead], expiresIn: -60 }),
      await mintAccessToken(app, { scopes: [AdminScope.AgentsRead], aud: 'https://api.example.com' }),
      foreign
    ]
    for (const token of tokens) {
      const response = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })
      expectProblem(response, 401)
      expect(response.headers['www-authenticate']).toMatch(/error="invalid_token"/)
    }
  })

  it('answers 403 insufficient_scope when the token lacks the scope of the route', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const readOnly = await authHeaders(app, [AdminScope.AgentsRead])
    const writeOnly = await authHeaders(app, [AdminScope.AgentsWrite])
    for (const [method, url, payload] of routes(agent.id)) {
      const headers = method === 'GET' ? writeOnly : readOnly
      const response = await app.inject({ method: method as 'GET', url, headers, payload: payload as object })
      expectProblem(response, 403)
      expect(response.headers['www-authenticate'], `${method} ${url}`).toMatch(/error="insufficient_scope"/)
    }
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: readOnly })).statusCode).toBe(200)
  })
})

describe('GET /api/v1/agents/{id}', () => {
  it('returns the agent, 404 for an unknown id and 400 for an id that is not a UUID', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'lookup' })
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const found = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers })
    expect(found.statusCode).toBe(200)
    expect(found.json()).toEqual(agent)
    expectProblem(await app.inject({ method: 'GET', url: '/api/v1/agents/01900000-0000-7000-8000-000000000000', headers }), 404)
    const bad = expectProblem(await app.inject({ method: 'GET', url: '/api/v1/agents/not-a-uuid', headers }), 400)
    expect(bad.errors[0].location).toBe('params/id')
  })
})

describe('GET /api/v1/agents', () => {
  async function listAll (app: Awaited<ReturnType<typeof context.build>>, query: string, between?: () => Promise<void>): Promise<string[]> {
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const seen: string[] = []
    let cursor: string | null = null
    do {
      const url: string = `/api/v1/agents?${query}${cursor === null ? '' : `&cursor=${cursor}`}`
      const response = await app.inject({ method: 'GET', url, headers })
      expect(response.statusCode).toBe(200)
      const page = response.json()
      seen.push(...page.items.map((item: { id: string }) => item.id))
      cursor = page.next_cursor
      if (between !== undefined) await between()
    } while (cursor !== null)
    return seen
  }

  it('pages in creation order with an opaque cursor, 20 by default', async () => {
    const app = await context.build()
    const owner = `pager-${Date.now()}`
    const created: string[] = []
    for (let i = 0; i < 23; i++) created.push((await createAgent(app, { name: `p${i}`, owner })).id)
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const first = (await app.inject({ method: 'GET', url: `/api/v1/agents?owner=${owner}`, headers })).json()
    expect(first.items.map((a: { id: string }) => a.id)).toEqual(created.slice(0, 20))
    expect(first.next_cursor).toEqual(expect.any(String))
    expect(first.next_cursor).not.toContain(created[19])
    const second = (await app.inject({ method: 'GET', url: `/api/v1/agents?owner=${owner}&cursor=${first.next_cursor}`, headers })).json()
    expect(second.items.map((a: { id: string }) => a.id)).toEqual(created.slice(20))
    expect(second.next_cursor).toBeNull()
  })

  it('shows every agent exactly once while others are being created', async () => {
    const app = await context.build()
    const owner = `busy-${Date.now()}`
    const before: string[] = []
    for (let i = 0; i < 12; i++) before.push((await createAgent(app, { name: `b${i}`, owner })).id)
    const during: string[] = []

    // Agents created between pages, each after the previous page was read: all of them must show up.
    const sequential = await listAll(app, `owner=${owner}&limit=5`, async () => {
      for (let i = 0; i < 2; i++) during.push((await createAgent(app, { name: 'between', owner })).id)
    })
    expect(new Set(sequential).size).toBe(sequential.length)
    expect(sequential.filter((id) => before.includes(id))).toEqual(before)
    // The last two were created after the last page was read.
    for (const id of during.slice(0, -2)) expect(sequential).toContain(id)

    // Agents created at the same time as the pages are read: no duplicate, nothing that existed before is missed.
    const racing: Array<Promise<unknown>> = []
    const concurrent = await listAll(app, `owner=${owner}&limit=4`, async () => {
      racing.push(createAgent(app, { name: 'racing', owner }), createAgent(app, { name: 'racing', owner }))
    })
    await Promise.all(racing)
    expect(new Set(concurrent).size).toBe(concurrent.length)
    for (const id of [...before, ...during]) expect(concurrent).toContain(id)
  })

  it('filters by status and owner', async () => {
    const app = await context.build()
    const owner = `filter-${Date.now()}`
    const active = await createAgent(app, { name: 'on', owner })
    const suspended = await createAgent(app, { name: 'off', owner })
    await createAgent(app, { name: 'elsewhere', owner: `${owner}-other` })
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${suspended.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const byOwner = (await app.inject({ method: 'GET', url: `/api/v1/agents?owner=${owner}`, headers })).json()
    expect(byOwner.items.map((a: { id: string }) => a.id)).toEqual([active.id, suspended.id])
    const bySuspended = (await app.inject({ method: 'GET', url: `/api/v1/agents?owner=${owner}&status=suspended`, headers })).json()
    expect(bySuspended.items.map((a: { id: string }) => a.id)).toEqual([suspended.id])
  })

  it('finds an agent by the client_id logs and audit events show', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'by client_id' })
    await createAgent(app, { name: 'another' })
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const found = (await app.inject({ method: 'GET', url: `/api/v1/agents?client_id=${agent.client_id}`, headers })).json()
    expect(found).toEqual({ items: [agent], next_cursor: null })
    const none = (await app.inject({ method: 'GET', url: '/api/v1/agents?client_id=agt_nobody', headers })).json()
    expect(none).toEqual({ items: [], next_cursor: null })
  })

  it('names the unknown property it refuses', async () => {
    const app = await context.build()
    const query = expectProblem(await app.inject({ method: 'GET', url: '/api/v1/agents?clientid=agt_x', headers: await authHeaders(app) }), 400)
    expect(query.detail).toBe('querystring must NOT have additional property \'clientid\'')
    expect(query.errors).toEqual([{ location: 'querystring', message: 'must NOT have additional property \'clientid\'' }])
    const body = expectProblem(await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: { name: 'a', scope: ['x'] } }), 400)
    expect(body.detail).toBe('body must NOT have additional property \'scope\'')
  })

  it.each([
    ['limit=0', 'querystring/limit'],
    ['limit=101', 'querystring/limit'],
    ['limit=ten', 'querystring/limit'],
    ['status=deleted', 'querystring/status'],
    ['cursor=not-a-cursor', 'querystring/cursor'],
    [`cursor=${Buffer.from('01900000-0000-7000-8000-000000000000').toString('base64url')}x`, 'querystring/cursor']
  ])('refuses %s with a 400', async (query, location) => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: `/api/v1/agents?${query}`, headers: await authHeaders(app) })
    const problem = expectProblem(response, 400)
    expect(problem.errors[0].location).toBe(location)
  })
})

describe('PATCH /api/v1/agents/{id}', () => {
  it('changes only the members given, clears with null and records agent.updated with the fields', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'before', description: 'd', owner: 'o', scopes: ['a:read'], metadata: { k: 'v' } })
    const response = await app.inject({
      method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app),
      payload: { name: 'after', description: null, scopes: ['a:read', 'a:write'], metadata: { k2: 'v2' } }
    })
    expect(response.statusCode).toBe(200)
    const updated = response.json()
    expect(updated).toMatchObject({ name: 'after', description: null, owner: 'o', scopes: ['a:read', 'a:write'], metadata: { k2: 'v2' }, status: 'active', client_id: agent.client_id })
    expect(new Date(updated.updated_at).getTime()).toBeGreaterThanOrEqual(new Date(agent.updated_at).getTime())
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })).json()).toEqual(updated)

    const events = (await auditEvents(app, 'agent.updated')).filter((e) => e.agent_id === agent.id)
    expect(events).toHaveLength(1)
    expect(events[0]?.data).toMatchObject({ fields: ['name', 'description', 'scopes', 'metadata'], scopes: { from: ['a:read'], to: ['a:read', 'a:write'] } })
    expect(JSON.stringify(events[0]?.data)).not.toContain('v2')
  })

  it('refuses an empty body, a body with only unknown members and an invalid status with a 400', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app)
    for (const payload of [{}, { nme: 'typo' }, { status: 'decommissioned' }, { name: '' }, { metadata: { blob: 'x'.repeat(9000) } }]) {
      expectProblem(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload }), 400)
    }
    expectProblem(await app.inject({ method: 'PATCH', url: '/api/v1/agents/01900000-0000-7000-8000-000000000000', headers, payload: { name: 'x' } }), 404)
  })

  it('suspends and reactivates, publishing the change for every replica and recording both', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app, [AdminScope.AgentsWrite], 'ops-admin')
    const key = agentChangedKey(agent.id)
    expect(await app.store.get(key)).toBeNull()

    const before = Date.now()
    const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload: { status: 'suspended' } })
    expect(suspended.json().status).toBe('suspended')
    const suspendedAt = Number(await app.store.get(key))
    expect(suspendedAt).toBeGreaterThanOrEqual(before)

    const reactivated = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload: { status: 'active' } })
    expect(reactivated.json().status).toBe('active')
    expect(Number(await app.store.get(key))).toBeGreaterThanOrEqual(suspendedAt)

    const events = (await auditEvents(app, 'agent.suspended', 'agent.reactivated', 'agent.updated')).filter((e) => e.agent_id === agent.id)
    expect(events.map((e) => [e.type, e.actor, e.data])).toEqual([
      ['agent.suspended', 'ops-admin', { from: 'active', to: 'suspended' }],
      ['agent.reactivated', 'ops-admin', { from: 'suspended', to: 'active' }]
    ])
  })

  it('keeps the invalidation key for the token lifetime plus five minutes', async () => {
    const app = await context.build({ TOKEN_TTL_SECONDS: '600' })
    const agent = await createAgent(app)
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    if (context.redisUrl === undefined) return expect(await app.store.get(agentChangedKey(agent.id))).not.toBeNull()
    const { createClient } = await import('redis')
    const client = createClient({ url: context.redisUrl })
    await client.connect()
    try {
      const ttl = await client.pTTL(agentChangedKey(agent.id))
      expect(ttl).toBeGreaterThan(850_000)
      expect(ttl).toBeLessThanOrEqual(900_000)
    } finally {
      await client.close()
    }
  })

  it('records nothing and publishes nothing when the status given is the current one', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const response = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'active', name: agent.name } })
    expect(response.statusCode).toBe(200)
    expect(response.json().updated_at).toBe(agent.updated_at)
    expect(await app.store.get(agentChangedKey(agent.id))).toBeNull()
    expect((await auditEvents(app)).filter((e) => e.agent_id === agent.id).map((e) => e.type)).toEqual(['agent.created'])
  })

  it('still suspends when Redis is down, and logs a warning', async () => {
    const logs = new LogCapture()
    const app = await context.build({ REDIS_URL: DEAD_REDIS }, { logs })
    const agent = await createAgent(app)
    const response = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    expect(response.statusCode).toBe(200)
    expect(response.json().status).toBe('suspended')
    const warning = logs.lines.map((line) => JSON.parse(line)).find((line) => line.msg?.startsWith('watermark stored in PostgreSQL only'))
    expect(warning).toMatchObject({ level: 40, agents: [agent.id] })
  })
})

describe('DELETE /api/v1/agents/{id}', () => {
  it('decommissions: record kept, every credential revoked in the same step, each change published and recorded', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const first = await createCredential(app, agent.id)
    const second = await createCredential(app, agent.id)
    const headers = await authHeaders(app, [AdminScope.AgentsWrite, AdminScope.AgentsRead], 'ops-admin')

    const response = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers })
    expect(response.statusCode).toBe(204)
    expect(response.body).toBe('')

    const shown = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers })
    expect(shown.statusCode).toBe(200)
    expect(shown.json()).toMatchObject({ id: agent.id, client_id: agent.client_id, status: 'decommissioned' })

    const rows = await ownerSql(app)<Array<{ id: string, revoked_at: Date | null }>>`select id, revoked_at from credentials where agent_id = ${agent.id}`
    expect(rows).toHaveLength(2)
    for (const row of rows) expect(row.revoked_at).toBeInstanceOf(Date)

    expect(await app.store.get(agentChangedKey(agent.id))).not.toBeNull()
    expect(await app.store.get(credentialChangedKey(first.id))).not.toBeNull()
    expect(await app.store.get(credentialChangedKey(second.id))).not.toBeNull()

    const events = (await auditEvents(app, 'agent.decommissioned', 'credential.revoked')).filter((e) => e.agent_id === agent.id)
    expect(events.map((e) => e.type)).toEqual(['agent.decommissioned', 'credential.revoked', 'credential.revoked'])
    expect(events[0]?.data).toEqual({ from: 'active', revoked_credentials: [first.id, second.id] })
    expect(events.slice(1).map((e) => e.data.credential_id)).toEqual([first.id, second.id])
    expect(events.every((e) => e.actor === 'ops-admin')).toBe(true)
  })

  it('never reactivates a decommissioned agent: any PATCH is a 409; a second DELETE is a 204 that records nothing', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app)
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers })
    for (const payload of [{ status: 'active' }, { status: 'suspended' }, { name: 'renamed' }]) {
      const problem = expectProblem(await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload }), 409)
      expect(problem.detail).toMatch(/decommissioned/)
    }
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers })).statusCode).toBe(204)
    expect((await auditEvents(app, 'agent.decommissioned')).filter((e) => e.agent_id === agent.id)).toHaveLength(1)
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers })).json().status).toBe('decommissioned')
  })

  it('decommissions a suspended agent, and 404s an unknown one', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app)
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload: { status: 'suspended' } })
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers })).statusCode).toBe(204)
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers })).json().status).toBe('decommissioned')
    expectProblem(await app.inject({ method: 'DELETE', url: '/api/v1/agents/01900000-0000-7000-8000-000000000000', headers }), 404)
  })
})

describe('GET /api/v1/agents/{id}/usage', () => {
  it('reads the monthly counter, the current UTC month by default', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    const month = new Date().toISOString().slice(0, 7)

    const empty = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage`, headers })
    expect(empty.statusCode).toBe(200)
    expect(empty.json()).toEqual({ agent_id: agent.id, month, tokens_issued: 0 })

    await app.store.set(`monthly:${agent.id}:${month}`, '42')
    await app.store.set(monthlyUsageKey(agent.id, '2024-02'), '7')
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage`, headers })).json().tokens_issued).toBe(42)
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage?month=2024-02`, headers })).json())
      .toEqual({ agent_id: agent.id, month: '2024-02', tokens_issued: 7 })
  })

  it('refuses a month that is not YYYY-MM with a 400 and 404s an unknown agent', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const headers = await authHeaders(app, [AdminScope.AgentsRead])
    for (const month of ['2024-13', '2024-00', '2024-1', '24-01', '2024-01-01', 'now']) {
      const problem = expectProblem(await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage?month=${month}`, headers }), 400)
      expect(problem.errors[0].location).toBe('querystring/month')
    }
    expectProblem(await app.inject({ method: 'GET', url: '/api/v1/agents/01900000-0000-7000-8000-000000000000/usage', headers }), 404)
  })

  it('answers 503 with Retry-After, not a 5xx crash or a made-up zero, when Redis is down', async () => {
    const app = await context.build({ REDIS_URL: DEAD_REDIS })
    const agent = await createAgent(app)
    const response = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/usage`, headers: await authHeaders(app) })
    expectProblem(response, 503)
    expect(response.headers['retry-after']).toBe('5')
  })
})

describe('management API rate limit', () => {
  it('answers 429 with Retry-After past RATE_LIMIT_API_PER_MIN requests per IP', async () => {
    const app = await context.build({ RATE_LIMIT_API_PER_MIN: '3' })
    const headers = await authHeaders(app)
    const statuses: number[] = []
    let last
    for (let i = 0; i < 4; i++) {
      last = await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers, remoteAddress: '203.0.113.9' })
      statuses.push(last.statusCode)
    }
    expect(statuses).toEqual([200, 200, 200, 429])
    expect(Number(last?.headers['retry-after'])).toBeGreaterThan(0)
    expect((await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers, remoteAddress: '203.0.113.10' })).statusCode).toBe(200)
  })

  it('does not limit when RATE_LIMIT_API_PER_MIN is 0', async () => {
    const app = await context.build({ RATE_LIMIT_API_PER_MIN: '0' })
    const headers = await authHeaders(app)
    for (let i = 0; i < 5; i++) {
      const response = await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers, remoteAddress: '203.0.113.11' })
      expect(response.statusCode).toBe(200)
    }
  })
})

describe('OpenAPI', () => {
  it('documents every agents and credentials operation with bearer security and its error responses', async () => {
    const app = await context.build()
    const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
    const operations = [
      ['/api/v1/agents', 'post'], ['/api/v1/agents', 'get'], ['/api/v1/agents/{id}', 'get'], ['/api/v1/agents/{id}', 'patch'],
      ['/api/v1/agents/{id}', 'delete'], ['/api/v1/agents/{id}/usage', 'get'], ['/api/v1/agents/{id}/credentials', 'post'],
      ['/api/v1/agents/{id}/credentials', 'get'], ['/api/v1/agents/{id}/credentials/{credential_id}', 'delete']
    ] as const
    for (const [path, method] of operations) {
      const operation = document.paths[path]?.[method]
      expect(operation, `${method} ${path}`).toBeDefined()
      expect(operation.security).toEqual([{ bearerAuth: [] }])
      expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['401', '403', '429']))
    }
  })
})
