import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { ADMIN_SCOPES, AdminScope } from '../../src/scopes.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { basicAuth, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

const DAY_MS = 86_400_000
const daysAgo = (days: number): Date => new Date(Date.now() - days * DAY_MS)

async function report (app: App, query = '', headers: Record<string, string> = {}) {
  return await app.inject({ method: 'GET', url: `/api/v1/reports/access-review${query}`, headers: { ...await authHeaders(app, [AdminScope.AuditRead]), ...headers } })
}

function agentIn (body: { agents: Array<{ id: string }> }, id: string): Record<string, any> {
  const agent = body.agents.find((item) => item.id === id)
  if (agent === undefined) throw new Error(`agent ${id} is not in the report`)
  return agent
}

/** Splits one CSV line of the report (fields quoted by RFC 4180 where needed). */
function csvFields (line: string): string[] {
  const fields: string[] = []
  let field = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const char = line[i] as string
    if (quoted) {
      if (char === '"' && line[i + 1] === '"') { field += '"'; i++ } else if (char === '"') quoted = false
      else field += char
    } else if (char === '"') quoted = true
    else if (char === ',') { fields.push(field); field = '' } else field += char
  }
  fields.push(field)
  return fields
}

describe('access review report', () => {
  it('flags seeded agents (times moved by writing rows), as JSON and as CSV, with credentials, creators and trusts', async () => {
    const app = await context.build({ REVIEW_STALE_DAYS: '30', CREDENTIAL_MAX_AGE_DAYS: '60' })
    const owner = ownerSql(app)
    const fresh = await createAgent(app, { name: 'fresh', owner: 'team-a', scopes: ['orders:read'] })
    const freshSecret = await createCredential(app, fresh.id)
    expect((await requestToken(app, fresh.client_id, freshSecret.client_secret)).statusCode).toBe(200)
    // last_used_at is written off the response path, within about a quarter second (client authentication).
    await expect.poll(async () => (await owner<Array<{ last_used_at: Date | null }>>`select last_used_at from credentials where id = ${freshSecret.id}`)[0]?.last_used_at ?? null).not.toBeNull()

    const idle = await createAgent(app, { name: 'idle', scopes: ['orders:read'] })
    const idleSecret = await createCredential(app, idle.id)
    // Used 45 days ago, created 100 days ago: stale, and its live credential is older than the maximum age.
    await owner`update agents set created_at = ${daysAgo(100)} where id = ${idle.id}`
    await owner`update credentials set created_at = ${daysAgo(100)}, last_used_at = ${daysAgo(45)} where id = ${idleSecret.id}`

    const admin = await createAgent(app, { name: 'admin', owner: 'platform', scopes: [AdminScope.AgentsRead] })
    const unused = await createAgent(app, { name: 'unused', owner: 'team-b' })
    await owner`update agents set created_at = ${daysAgo(40)} where id = ${unused.id}`
    const oldAdmin = await createAgent(app, { name: 'old admin', owner: 'platform', scopes: [AdminScope.AuditRead] })
    const federated = await createCredential(app, unused.id, { type: 'federated', issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:acme/app:ref:refs/heads/main', jwks_uri: 'https://token.actions.githubusercontent.com/.well-known/jwks' })

    // fresh lets idle act for it (token exchange): granted by fresh, received by idle.
    const delegation = await app.inject({ method: 'POST', url: `/api/v1/agents/${fresh.id}/delegations`, headers: await authHeaders(app), payload: { actor_id: idle.id, scopes: ['orders:read'] } })
    expect(delegation.statusCode, delegation.body).toBe(201)

    const response = await report(app)
    expect(response.statusCode, response.body).toBe(200)
    expect(response.headers['content-type']).toContain('application/json')
    const body = response.json()
    expect(body.thresholds).toEqual({ review_stale_days: 30, credential_max_age_days: 60 })
    expect(new Date(body.period.until).getTime() - new Date(body.period.since).getTime()).toBe(30 * DAY_MS)

    expect(agentIn(body, fresh.id).flags).toEqual([])
    expect(agentIn(body, fresh.id).credentials[0]).toMatchObject({ id: freshSecret.id, type: 'client_secret', created_by: 'test-admin', live: true })
    expect(agentIn(body, fresh.id).last_used_at).not.toBeNull()
    expect(agentIn(body, idle.id).flags).toEqual(['stale', 'credential_too_old', 'no_owner'])
    expect(agentIn(body, admin.id).flags).toEqual(['never_used', 'admin_scopes', 'admin_granted_recently'])
    expect(agentIn(body, unused.id).flags).toEqual(['never_used', 'stale'])
    expect(agentIn(body, unused.id).federated_trusts).toEqual([expect.objectContaining({ credential_id: federated.id, issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:acme/app:ref:refs/heads/main', live: true })])
    expect(agentIn(body, unused.id).delegations).toEqual({ granted: [], received: [] })
    const granted = { id: delegation.json().id, agent_id: fresh.id, actor_id: idle.id, scopes: ['orders:read'], expires_at: null, live: true }
    expect(agentIn(body, fresh.id).delegations).toEqual({ granted: [expect.objectContaining(granted)], received: [] })
    expect(agentIn(body, idle.id).delegations).toEqual({ granted: [], received: [expect.objectContaining(granted)] })
    expect(agentIn(body, idle.id).acts_for_people).toEqual([])
    expect(agentIn(body, unused.id)).toMatchObject({ owner: 'team-b', status: 'active', scopes: [], resources: [], last_review: null })

    // The review period: a grant before `since` is not recent.
    const later = await report(app, `?since=${encodeURIComponent(new Date(Date.now() + 1000 - 1000).toISOString())}`)
    expect(agentIn(later.json(), oldAdmin.id).flags).toEqual(['never_used', 'admin_scopes'])
    expect((await report(app, '?since=2999-01-01T00:00:00Z')).statusCode).toBe(400)
    expect((await report(app, '?since=yesterday')).statusCode).toBe(400)

    const csv = await report(app, '', { accept: 'text/csv' })
    expect(csv.statusCode).toBe(200)
    expect(csv.headers['content-type']).toContain('text/csv')
    const [header, ...lines] = csv.body.trimEnd().split('\r\n') as [string, ...string[]]
    const columns = csvFields(header)
    expect(columns).toEqual(expect.arrayContaining(['agent_id', 'flags', 'live_credentials', 'last_review_decision']))
    const rows = lines.map((line) => Object.fromEntries(csvFields(line).map((value, index) => [columns[index], value])))
    expect(rows).toHaveLength(body.agents.length)
    expect(rows.find((row) => row.agent_id === idle.id)).toMatchObject({ flags: 'stale credential_too_old no_owner', live_credentials: '1', credential_creators: 'test-admin' })
    expect(rows.find((row) => row.agent_id === fresh.id)?.delegates_to).toBe(idle.id)
    expect(rows.find((row) => row.agent_id === idle.id)?.acts_for).toBe(fresh.id)
    expect(rows.find((row) => row.agent_id === unused.id)?.federated_trusts).toBe('https://token.actions.githubusercontent.com#repo:acme/app:ref:refs/heads/main')
  })

  it('makes spreadsheet formulas inert in CSV, and needs audit:read', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: '=HYPERLINK("http://evil")', owner: '+team' })
    const csv = await report(app, '', { accept: 'text/csv' })
    const line = csv.body.split('\r\n').find((row) => row.startsWith(agent.id)) as string
    expect(csvFields(line)[2]).toBe('\'=HYPERLINK("http://evil")')
    expect(csvFields(line)[4]).toBe('\'+team')
    const refused = await app.inject({ method: 'GET', url: '/api/v1/reports/access-review', headers: await authHeaders(app, [AdminScope.AgentsRead]) })
    expect(refused.statusCode).toBe(403)
    expect(refused.json().missing_scopes).toEqual([AdminScope.AuditRead])
  })
})

describe('attestations', () => {
  it('keep records a review; revoke suspends the agent, kills its tokens, and the report shows the last review', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'reviewed', owner: 'team-a' })
    const secret = await createCredential(app, agent.id)
    const token = (await requestToken(app, agent.client_id, secret.client_secret)).json().access_token as string
    const reviewer = await authHeaders(app, [AdminScope.ReviewsWrite], 'reviewer-1')
    const introspector = await createAgent(app, { name: 'resource server', owner: 'team-a', scopes: [AdminScope.TokensIntrospect] })
    const introspectorSecret = await createCredential(app, introspector.id)
    expect((await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(introspector.client_id, introspectorSecret.client_secret) })).json().active).toBe(true)

    const keep = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: reviewer, payload: { agent_id: agent.id, decision: 'keep', note: 'still needed' } })
    expect(keep.statusCode, keep.body).toBe(201)
    expect(keep.json()).toMatchObject({ agent_id: agent.id, decision: 'keep', note: 'still needed', reviewer: 'reviewer-1', status: 'active' })
    expect(agentIn((await report(app)).json(), agent.id).last_review).toMatchObject({ decision: 'keep', note: 'still needed', reviewer: 'reviewer-1' })

    const revoke = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: reviewer, payload: { agent_id: agent.id, decision: 'revoke' } })
    expect(revoke.statusCode, revoke.body).toBe(201)
    expect(revoke.json()).toMatchObject({ decision: 'revoke', status: 'suspended', note: null })
    const introspected = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(introspector.client_id, introspectorSecret.client_secret) })
    expect(introspected.json().active).toBe(false)
    expect((await requestToken(app, agent.client_id, secret.client_secret)).statusCode).toBe(401)
    const shown = agentIn((await report(app)).json(), agent.id)
    expect(shown).toMatchObject({ status: 'suspended', last_review: { decision: 'revoke', reviewer: 'reviewer-1' } })

    const events = (await auditEvents(app, 'agent.reviewed', 'agent.suspended')).filter((event) => event.agent_id === agent.id)
    expect(events.map((event) => [event.type, event.actor])).toEqual([['agent.reviewed', 'reviewer-1'], ['agent.reviewed', 'reviewer-1'], ['agent.suspended', 'reviewer-1']])
    expect(events[1]?.data).toMatchObject({ decision: 'revoke', status_before: 'active', status_after: 'suspended' })
  })

  it('refuses a reviewer without reviews:write, a revoke of an agent with management scopes it lacks, and unknown agents', async () => {
    const app = await context.build()
    const admin = await createAgent(app, { name: 'admin', owner: 'platform', scopes: [AdminScope.AgentsWrite] })
    const reviewer = await authHeaders(app, [AdminScope.ReviewsWrite], 'reviewer-2')
    const noScope = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: await authHeaders(app, [AdminScope.AgentsWrite]), payload: { agent_id: admin.id, decision: 'keep' } })
    expect(noScope.statusCode).toBe(403)
    const beyond = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: reviewer, payload: { agent_id: admin.id, decision: 'revoke' } })
    expect(beyond.statusCode).toBe(403)
    expect(beyond.json().missing_scopes).toEqual([AdminScope.AgentsWrite])
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${admin.id}`, headers: await authHeaders(app) })).json().status).toBe('active')
    const missing = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: reviewer, payload: { agent_id: '01890000-0000-7000-8000-000000000000', decision: 'keep' } })
    expect(missing.statusCode).toBe(404)
    const bad = await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: reviewer, payload: { agent_id: admin.id, decision: 'maybe' } })
    expect(bad.statusCode).toBe(400)
    expect(bad.headers['content-type']).toContain('application/problem+json')
    // An organization's admin holds reviews:write (every admin scope but the platform's).
    expect(ADMIN_SCOPES).toContain(AdminScope.ReviewsWrite)
  })
})

describe('sponsors', () => {
  it('REQUIRE_AGENT_OWNER=true refuses an agent without an owner with 400', async () => {
    const app = await context.build({ REQUIRE_AGENT_OWNER: 'true' })
    for (const payload of [{ name: 'orphan' }, { name: 'blank', owner: '  ' }]) {
      const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload })
      expect(response.statusCode).toBe(400)
      expect(response.headers['content-type']).toContain('application/problem+json')
      expect(response.json().errors).toEqual([{ location: 'body/owner', message: 'is required' }])
    }
    expect((await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: { name: 'sponsored', owner: 'alice' } })).statusCode).toBe(201)
  })
})
