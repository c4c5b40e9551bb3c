import { describe, expect, it } from 'vitest'
import { scanCredentialExpiry } from '../../plugins/clients/public.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { ownerSql, setupTestContext } from '../helper.js'

const context = setupTestContext()

const DAY_MS = 86_400_000
const inDays = (days: number): Date => new Date(Date.now() + days * DAY_MS)

describe('credential maximum age', () => {
  it('CREDENTIAL_MAX_AGE_DAYS caps expires_at: the default is the cap, an earlier one is kept, a later one is a 400', async () => {
    const app = await context.build({ CREDENTIAL_MAX_AGE_DAYS: '30' })
    const agent = await createAgent(app, { name: 'capped', owner: 'team' })
    const before = Date.now()
    const defaulted = await createCredential(app, agent.id)
    const expiresAt = new Date(defaulted.expires_at).getTime()
    expect(expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY_MS - 1000)
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 30 * DAY_MS)

    const earlier = inDays(10).toISOString()
    expect((await createCredential(app, agent.id, { expires_at: earlier })).expires_at).toBe(earlier)

    const later = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload: { expires_at: inDays(31).toISOString() } })
    expect(later.statusCode).toBe(400)
    expect(later.headers['content-type']).toContain('application/problem+json')
    expect(later.json().errors).toEqual([{ location: 'body/expires_at', message: 'must be at most 30 days from now' }])
    expect(later.json().detail).toContain('CREDENTIAL_MAX_AGE_DAYS')
  })

  it('without CREDENTIAL_MAX_AGE_DAYS a credential may never expire', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'uncapped' })
    expect((await createCredential(app, agent.id)).expires_at).toBeNull()
    expect((await createCredential(app, agent.id, { expires_at: inDays(3650).toISOString() })).expires_at).not.toBeNull()
  })
})

describe('credential expiry events', () => {
  it('records credential.expiring once, CREDENTIAL_EXPIRY_WARNING_DAYS ahead, then credential.expired once; revoked ones never', async () => {
    const app = await context.build({ CREDENTIAL_EXPIRY_WARNING_DAYS: '7' })
    const owner = ownerSql(app)
    const agent = await createAgent(app, { name: 'expiring', owner: 'team' })
    const soon = await createCredential(app, agent.id, { expires_at: inDays(3).toISOString() })
    const later = await createCredential(app, agent.id, { expires_at: inDays(20).toISOString() })
    const revoked = await createCredential(app, agent.id, { expires_at: inDays(2).toISOString() })
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${revoked.id}`, headers: await authHeaders(app) })).statusCode).toBe(204)

    await scanCredentialExpiry(app)
    await scanCredentialExpiry(app)
    const expiring = await auditEvents(app, 'credential.expiring')
    expect(expiring.map((event) => event.data.credential_id)).toEqual([soon.id])
    expect(expiring[0]).toMatchObject({ agent_id: agent.id, actor: 'system', data: { credential_type: 'client_secret', expires_at: soon.expires_at } })
    expect(await auditEvents(app, 'credential.expired')).toEqual([])

    // Time moves by data: the first credential has now expired, the second is within the warning.
    await owner`update credentials set expires_at = now() - interval '1 minute' where id = ${soon.id}`
    await owner`update credentials set expires_at = now() + interval '6 days' where id = ${later.id}`
    await scanCredentialExpiry(app)
    await scanCredentialExpiry(app)
    expect((await auditEvents(app, 'credential.expiring')).map((event) => event.data.credential_id)).toEqual([soon.id, later.id])
    expect((await auditEvents(app, 'credential.expired')).map((event) => event.data.credential_id)).toEqual([soon.id])

    // A credential that expires before any warning was recorded gets credential.expired only.
    const sudden = await createCredential(app, agent.id, { expires_at: inDays(100).toISOString() })
    await owner`update credentials set expires_at = now() - interval '1 second' where id = ${sudden.id}`
    await scanCredentialExpiry(app)
    expect((await auditEvents(app, 'credential.expiring')).map((event) => event.data.credential_id)).not.toContain(sudden.id)
    expect((await auditEvents(app, 'credential.expired')).map((event) => event.data.credential_id)).toEqual([soon.id, sudden.id])
  })

  it('scans each organization into its own chain', async () => {
    const app = await context.build()
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'hygiene-org', name: 'Hygiene' } })
    expect(created.statusCode, created.body).toBe(201)
    const org = created.json()
    const owner = ownerSql(app)
    await owner`update credentials set expires_at = now() + interval '1 day' where org_id = ${org.id}`
    await scanCredentialExpiry(app)
    const credentialIds = (await owner<Array<{ id: string }>>`select id from credentials where org_id = ${org.id}`).map((row) => row.id)
    const rows = await owner<Array<{ org_id: string, credential_id: string }>>`
      select org_id, data->>'credential_id' as credential_id from audit_events where type = 'credential.expiring' and data->>'credential_id' = any(${credentialIds})`
    expect(rows).toEqual([{ org_id: org.id, credential_id: credentialIds[0] }])
  })
})
