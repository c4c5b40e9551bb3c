import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { createRemoteJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import * as client from 'openid-client'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { createSql, DEFAULT_APP_ROLE, DEFAULT_ORG_ID, inOrganization } from '../../src/database.js'
import { ORGANIZATION_ADMIN_SCOPES } from '../../src/scopes.js'
import { verifyChain } from '../../plugins/audit/public.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { authHeaders } from '../support/management.js'
import { basicAuth, claimsOf, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

const ORGANIZATION_OWNED = ['agents', 'credentials', 'audit_events', 'token_revocations', 'client_assertion_jtis', 'organization_keys', 'agent_delegations', 'subject_trusts']

interface Organization { id: string, slug: string, issuer: string, admin: { agent_id: string, client_id: string, client_secret: string } }

async function createOrganization (app: App, slug: string): Promise<Organization> {
  const response = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug, name: `Org ${slug}` } })
  expect(response.statusCode, response.body).toBe(201)
  return response.json()
}

async function tokenIn (app: App, slug: string, clientId: string, secret: string): Promise<string> {
  const response = await requestToken(app, clientId, secret, {}, undefined, `/o/${slug}/oauth2/token`)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

async function freePort (): Promise<number> {
  return await new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => { resolve(port) })
    })
  })
}

describe('organizations', () => {
  it('creates an organization with its own issuer, keys and first admin, whose tokens carry its iss and org_id', async () => {
    const app = await context.build({ ISSUER: 'https://idp.example.com' })
    // Asked for before it exists: a 404, which creating it does not leave behind.
    expect((await app.inject({ method: 'GET', url: '/o/acme/.well-known/jwks.json' })).statusCode).toBe(404)
    const org = await createOrganization(app, 'acme')
    expect(org).toMatchObject({ slug: 'acme', status: 'active', issuer: 'https://idp.example.com/o/acme' })
    expect(org.admin.client_secret).toBeTypeOf('string')

    for (const path of ['/o/acme/.well-known/openid-configuration', '/.well-known/oauth-authorization-server/o/acme']) {
      const metadata = (await app.inject({ method: 'GET', url: path })).json()
      expect(metadata).toMatchObject({
        issuer: 'https://idp.example.com/o/acme',
        token_endpoint: 'https://idp.example.com/o/acme/oauth2/token',
        jwks_uri: 'https://idp.example.com/o/acme/.well-known/jwks.json'
      })
      expect(metadata.scopes_supported).toEqual(ORGANIZATION_ADMIN_SCOPES)
    }
    const orgKeys = (await app.inject({ method: 'GET', url: '/o/acme/.well-known/jwks.json' })).json().keys
    const defaultKeys = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json().keys
    expect(orgKeys).toHaveLength(1)
    expect(defaultKeys.map((key: { kid: string }) => key.kid)).not.toContain(orgKeys[0].kid)

    const token = await tokenIn(app, 'acme', org.admin.client_id, org.admin.client_secret)
    expect(claimsOf(token)).toMatchObject({ iss: 'https://idp.example.com/o/acme', org_id: org.id, aud: 'https://idp.example.com/o/acme' })
    expect(decodeProtectedHeader(token).kid).toBe(orgKeys[0].kid)
    expect(claimsOf(token).scope.split(' ').sort()).toEqual([...ORGANIZATION_ADMIN_SCOPES].sort())

    // Its DID (did:web) sits under its issuer's path, its agents' too, with its own keys.
    const did = await app.inject({ method: 'GET', url: '/o/acme/did.json' })
    expect(did.statusCode, did.body).toBe(200)
    expect(did.json().id).toBe('did:web:idp.example.com:o:acme')
    expect(JSON.stringify(did.json())).toContain(orgKeys[0].kid)
    const agentDid = await app.inject({ method: 'GET', url: `/o/acme/agents/${org.admin.agent_id}/did.json` })
    expect(agentDid.statusCode, agentDid.body).toBe(200)
    expect(agentDid.json().id).toBe(`did:web:idp.example.com:o:acme:agents:${org.admin.agent_id}`)
    expect((await app.inject({ method: 'GET', url: `/agents/${org.admin.agent_id}/did.json` })).statusCode).toBe(404)

    // The slug is taken; an unknown organization is a 404; /o/default is no second name of the default issuer.
    expect((await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'acme', name: 'again' } })).statusCode).toBe(409)
    expect((await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'A!', name: 'bad' } })).statusCode).toBe(400)
    expect((await app.inject({ method: 'GET', url: '/o/nowhere/.well-known/openid-configuration' })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: '/o/default/.well-known/jwks.json' })).statusCode).toBe(404)
  })

  it('keeps organizations apart at the HTTP level, both ways: management API, introspection, revocation, names', async () => {
    const app = await context.build()
    const acme = await createOrganization(app, 'acme-iso')
    const beta = await createOrganization(app, 'beta-iso')
    const acmeToken = await tokenIn(app, 'acme-iso', acme.admin.client_id, acme.admin.client_secret)
    const betaToken = await tokenIn(app, 'beta-iso', beta.admin.client_id, beta.admin.client_secret)
    const defaultAdmin = await authHeaders(app)

    // Each admin sees its own agents only; client_ids and names need only be unique within an organization.
    const made = await app.inject({ method: 'POST', url: '/o/acme-iso/api/v1/agents', headers: { authorization: `Bearer ${acmeToken}` }, payload: { name: 'acme bot', scopes: ['orders:read'] } })
    expect(made.statusCode, made.body).toBe(201)
    const acmeAgent = made.json()
    expect(made.headers.location).toBe(`/o/acme-iso/api/v1/agents/${acmeAgent.id}`)
    const listed = async (slug: string, token: string): Promise<string[]> => (await app.inject({ method: 'GET', url: `/o/${slug}/api/v1/agents`, headers: { authorization: `Bearer ${token}` } })).json().items.map((agent: { id: string }) => agent.id)
    expect(await listed('acme-iso', acmeToken)).toEqual(expect.arrayContaining([acme.admin.agent_id, acmeAgent.id]))
    expect(await listed('beta-iso', betaToken)).toEqual([beta.admin.agent_id])
    expect((await app.inject({ method: 'GET', url: `/o/beta-iso/api/v1/agents/${acmeAgent.id}`, headers: { authorization: `Bearer ${betaToken}` } })).statusCode).toBe(404)
    const defaultList = (await app.inject({ method: 'GET', url: '/api/v1/agents', headers: defaultAdmin })).json().items.map((agent: { id: string }) => agent.id)
    expect(defaultList).not.toContain(acmeAgent.id)

    // A token of one organization is refused by another's management API, and by the default's; and the other way.
    for (const [url, token] of [['/o/beta-iso/api/v1/agents', acmeToken], ['/api/v1/agents', acmeToken], ['/o/acme-iso/api/v1/agents', betaToken]] as const) {
      expect((await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401)
    }
    expect((await app.inject({ method: 'GET', url: '/o/acme-iso/api/v1/agents', headers: defaultAdmin })).statusCode).toBe(401)
    expect((await app.inject({ method: 'GET', url: '/o/acme-iso/api/v1/audit-events', headers: { authorization: `Bearer ${acmeToken}` } })).json().items
      .every((event: { type: string }) => event.type !== 'organization.created')).toBe(true)

    // Introspection: active at its own issuer, inactive at another's.
    const introspect = async (slug: string, org: Organization, token: string): Promise<boolean> =>
      (await postForm(app, `/o/${slug}/oauth2/introspect`, { token }, { authorization: basicAuth(org.admin.client_id, org.admin.client_secret) })).json().active
    expect(await introspect('acme-iso', acme, acmeToken)).toBe(true)
    expect(await introspect('beta-iso', beta, acmeToken)).toBe(false)
    // A client of one organization does not authenticate at another's endpoints.
    expect((await requestToken(app, acme.admin.client_id, acme.admin.client_secret, {}, undefined, '/o/beta-iso/oauth2/token')).statusCode).toBe(401)
    expect((await requestToken(app, acme.admin.client_id, acme.admin.client_secret)).statusCode).toBe(401)

    // Least privilege inside an organization: platform scopes are never granted there.
    const platform = await app.inject({ method: 'POST', url: '/o/acme-iso/api/v1/agents', headers: { authorization: `Bearer ${acmeToken}` }, payload: { name: 'escalate', scopes: ['organizations:write'] } })
    expect(platform.statusCode).toBe(403)
    expect(platform.json().missing_scopes).toEqual(['organizations:write'])
    expect((await app.inject({ method: 'GET', url: '/o/acme-iso/api/v1/organizations', headers: { authorization: `Bearer ${acmeToken}` } })).statusCode).toBe(404)

    // Each organization's audit chain verifies on its own.
    for (const orgId of [DEFAULT_ORG_ID, acme.id, beta.id]) expect(await verifyChain(ownerSql(app), orgId)).toMatchObject({ ok: true })
  })

  it('refuses every management route to another organization\'s token, both ways, and every OAuth endpoint to its clients', async () => {
    const app = await context.build()
    const acme = await createOrganization(app, 'acme-routes')
    const beta = await createOrganization(app, 'beta-routes')
    const tokens = {
      'acme-routes': await tokenIn(app, 'acme-routes', acme.admin.client_id, acme.admin.client_secret),
      'beta-routes': await tokenIn(app, 'beta-routes', beta.admin.client_id, beta.admin.client_secret)
    }
    const admins = { 'acme-routes': acme.admin, 'beta-routes': beta.admin }
    const credentialOf = async (slug: 'acme-routes' | 'beta-routes'): Promise<string> =>
      (await app.inject({ method: 'GET', url: `/o/${slug}/api/v1/agents/${admins[slug].agent_id}/credentials`, headers: { authorization: `Bearer ${tokens[slug]}` } })).json().items[0].id
    const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, { security?: unknown[] }>> }
    const routes = Object.entries(document.paths).filter(([path]) => path.startsWith('/api/')).flatMap(([path, methods]) => Object.entries(methods)
      .filter(([, operation]) => (operation.security ?? []).length > 0)
      .map(([method]) => ({ method: method.toUpperCase(), path })))
    expect(routes.length).toBeGreaterThanOrEqual(12)
    for (const [owner, intruder] of [['acme-routes', 'beta-routes'], ['beta-routes', 'acme-routes']] as const) {
      const credentialId = await credentialOf(owner)
      for (const { method, path } of routes) {
        const url = `/o/${owner}${path.replace('{id}', admins[owner].agent_id).replace('{credential_id}', credentialId)}`
        const response = await app.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${tokens[intruder]}` }, ...(method === 'GET' || method === 'DELETE' ? {} : { payload: {} }) })
        // Platform routes do not exist under an organization (404); every other refuses the foreign token (401).
        expect(response.statusCode, `${method} ${url}`).toBe(path.startsWith('/api/v1/organizations') ? 404 : 401)
      }
    }
    // Nothing changed: each admin and its credential are as they were.
    for (const slug of ['acme-routes', 'beta-routes'] as const) {
      expect((await app.inject({ method: 'GET', url: `/o/${slug}/api/v1/agents/${admins[slug].agent_id}`, headers: { authorization: `Bearer ${tokens[slug]}` } })).json().status).toBe('active')
    }
    // The OAuth endpoints authenticate only their own organization's clients.
    for (const endpoint of ['/oauth2/token', '/oauth2/revoke', '/oauth2/introspect']) {
      const form: Record<string, string> = endpoint === '/oauth2/token' ? { grant_type: 'client_credentials' } : { token: tokens['acme-routes'] }
      const response = await postForm(app, `/o/beta-routes${endpoint}`, form, { authorization: basicAuth(acme.admin.client_id, acme.admin.client_secret) })
      expect(response.statusCode, endpoint).toBe(401)
      expect(response.json().error).toBe('invalid_client')
    }
  })

  it('records the last use of credentials of several organizations, written together off the response path', async () => {
    const app = await context.build()
    const orgs = [await createOrganization(app, 'used-one'), await createOrganization(app, 'used-two')]
    const lastUsed = async (org: Organization): Promise<Date | null> => {
      const [row] = await ownerSql(app)<Array<{ last_used_at: Date | null }>>`
        select c.last_used_at from credentials c join agents a on a.id = c.agent_id
        where a.org_id = ${org.id} and a.client_id = ${org.admin.client_id}`
      return row?.last_used_at ?? null
    }
    expect(await lastUsed(orgs[0] as Organization)).toBeNull()
    const before = Date.now()
    for (const org of orgs) await tokenIn(app, org.slug, org.admin.client_id, org.admin.client_secret)
    for (const org of orgs) {
      await expect.poll(async () => await lastUsed(org), { timeout: 10_000 }).not.toBeNull()
      expect((await lastUsed(org))?.getTime()).toBeGreaterThanOrEqual(before - 1000)
    }
  })

  it('authenticates private_key_jwt clients inside an organization, with the organization\'s issuer as the audience only', async () => {
    const app = await context.build({ ISSUER: 'https://idp.example.com' })
    const org = await createOrganization(app, 'keyed')
    const admin = { authorization: `Bearer ${await tokenIn(app, 'keyed', org.admin.client_id, org.admin.client_secret)}` }
    const agent = (await app.inject({ method: 'POST', url: '/o/keyed/api/v1/agents', headers: admin, payload: { name: 'keyed bot', scopes: ['orders:read'] } })).json()
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const registered = await app.inject({ method: 'POST', url: `/o/keyed/api/v1/agents/${agent.id}/credentials`, headers: admin, payload: { type: 'private_key_jwt', jwk: await exportJWK(publicKey) } })
    expect(registered.statusCode, registered.body).toBe(201)
    const assertion = async (aud: string): Promise<string> => await new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'ES256' }).setIssuer(agent.client_id).setSubject(agent.client_id).setAudience(aud).setIssuedAt().setExpirationTime('1m').sign(privateKey)
    const tokenWith = async (url: string, aud: string) => await postForm(app, url, {
      grant_type: 'client_credentials', client_id: agent.client_id, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(aud)
    })
    const granted = await tokenWith('/o/keyed/oauth2/token', 'https://idp.example.com/o/keyed')
    expect(granted.statusCode, granted.body).toBe(200)
    expect(claimsOf(granted.json().access_token)).toMatchObject({ iss: 'https://idp.example.com/o/keyed', org_id: org.id, client_id: agent.client_id })
    // The default issuer as audience, or the default token endpoint, is another issuer's.
    expect((await tokenWith('/o/keyed/oauth2/token', 'https://idp.example.com')).statusCode).toBe(401)
    expect((await tokenWith('/oauth2/token', 'https://idp.example.com')).statusCode).toBe(401)
  })

  it('isolates in SQL: as the app role with no organization set, every organization-owned table shows zero rows; a pooled connection never carries one organization into the next', async () => {
    const app = await context.build()
    const acme = await createOrganization(app, 'acme-sql')
    await tokenIn(app, 'acme-sql', acme.admin.client_id, acme.admin.client_secret)
    const owner = ownerSql(app)
    // Every table with org_id has row-level security enabled and forced: a new table cannot forget it.
    const withOrgId = (await owner`
      select c.relname as table, c.relrowsecurity as enabled, c.relforcerowsecurity as forced
      from pg_class c join pg_attribute a on a.attrelid = c.oid and a.attname = 'org_id' and not a.attisdropped
      join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
      where c.relkind = 'r' order by c.relname`) as unknown as Array<{ table: string, enabled: boolean, forced: boolean }>
    expect(withOrgId.map((row) => row.table)).toEqual(expect.arrayContaining(ORGANIZATION_OWNED))
    for (const row of withOrgId) expect(row, row.table).toMatchObject({ enabled: true, forced: true })
    const ORGANIZATION_TABLES = withOrgId.map((row) => row.table)
    const counts = async (tx: typeof owner): Promise<number[]> => {
      const result: number[] = []
      for (const table of ORGANIZATION_TABLES) result.push(Number((await tx.unsafe(`select count(*)::int as count from ${table}`))[0]?.count))
      return result
    }
    // The owner sees both organizations' rows; the app role outside an organization sees none, inside one its own.
    const ownerCounts = await counts(owner)
    // agents, credentials, audit_events and organization_keys hold rows of both organizations.
    for (const table of ['agents', 'credentials', 'audit_events', 'organization_keys']) expect(ownerCounts[ORGANIZATION_TABLES.indexOf(table)], table).toBeGreaterThan(0)
    const asAppRole = await owner.begin(async (tx) => {
      await tx.unsafe(`set local role ${DEFAULT_APP_ROLE}`)
      return await counts(tx as unknown as typeof owner)
    })
    expect(asAppRole).toEqual(ORGANIZATION_TABLES.map(() => 0))
    const inAcme = await inOrganization(owner, acme.id, async (tx) => {
      await tx.unsafe(`set local role ${DEFAULT_APP_ROLE}`)
      return Number((await tx`select count(*)::int as count from agents where org_id <> ${acme.id}`)[0]?.count)
    })
    expect(inAcme).toBe(0)

    // The app's own pool, one connection: A, then B, then nothing set: no row of A in B, none at all after.
    if (context.database.kind === 'postgresql') {
      const pool = createSql(context.database.url, 1, { appRole: DEFAULT_APP_ROLE })
      try {
        const acmeAgents = await inOrganization(pool, acme.id, async (tx) => await tx`select id from agents`)
        expect(acmeAgents.length).toBeGreaterThan(0)
        const defaultSees = await inOrganization(pool, DEFAULT_ORG_ID, async (tx) => await tx`select id from agents where id = ${acme.admin.agent_id}`)
        expect(defaultSees).toHaveLength(0)
        expect(await pool`select id from agents`).toHaveLength(0)
        await expect(pool`insert into agents (id, client_id, name) values (${acme.admin.agent_id}, 'x', 'x')`).rejects.toThrow(/row-level security/)
      } finally {
        await pool.end({ timeout: 1 })
      }
    }
  })

  it('rotates an organization\'s key: openid-client discovers its issuer, jose\'s remote JWKS verifies tokens of both keys, the old key retires later', async () => {
    const port = await freePort()
    const issuer = `http://127.0.0.1:${port}`
    const app = await context.build({ ISSUER: issuer })
    await app.listen({ port, host: '127.0.0.1' })
    const org = await createOrganization(app, 'rotating')
    const orgIssuer = `${issuer}/o/rotating`

    const configuration = await client.discovery(new URL(orgIssuer), org.admin.client_id, org.admin.client_secret, client.ClientSecretBasic(org.admin.client_secret), { execute: [client.allowInsecureRequests] })
    expect(configuration.serverMetadata().issuer).toBe(orgIssuer)
    const before = (await client.clientCredentialsGrant(configuration)).access_token
    const jwks = createRemoteJWKSet(new URL(configuration.serverMetadata().jwks_uri as string))
    await jwtVerify(before, jwks, { issuer: orgIssuer })

    const admin = { authorization: `Bearer ${before}` }
    const rotated = await app.inject({ method: 'POST', url: '/o/rotating/api/v1/keys/rotate', headers: admin })
    expect(rotated.statusCode, rotated.body).toBe(200)
    const { kid, previous } = rotated.json()
    expect(previous.kid).toBe(decodeProtectedHeader(before).kid)
    expect(new Date(previous.retires_at).getTime()).toBeGreaterThan(Date.now() + 3000_000)

    const after = (await client.clientCredentialsGrant(configuration)).access_token
    expect(decodeProtectedHeader(after).kid).toBe(kid)
    // A fresh key set (a resource server starting now) verifies both, and the JWKS publishes both.
    const fresh = createRemoteJWKSet(new URL(configuration.serverMetadata().jwks_uri as string))
    await jwtVerify(before, fresh, { issuer: orgIssuer })
    await jwtVerify(after, fresh, { issuer: orgIssuer })
    const published = (await app.inject({ method: 'GET', url: '/o/rotating/.well-known/jwks.json' })).json().keys.map((key: { kid: string }) => key.kid)
    expect(published.sort()).toEqual([kid, previous.kid].sort())
    // The default organization's keys are configuration's.
    expect((await app.inject({ method: 'POST', url: '/api/v1/keys/rotate', headers: await authHeaders(app) })).statusCode).toBe(409)
    // Recorded in the organization's own chain.
    const events = await inOrganization(ownerSql(app), org.id, async (tx) => await tx`select data->>'kid' as kid from audit_events where org_id = ${org.id} and type = 'key.rotated' order by seq`)
    expect(events.map((event) => event.kid)).toEqual([previous.kid, kid])
  })

  it('suspends (its clients refused, its tokens inactive at once), reactivates, and deletes only a suspended organization', async () => {
    const app = await context.build()
    const org = await createOrganization(app, 'pausing')
    const token = await tokenIn(app, 'pausing', org.admin.client_id, org.admin.client_secret)
    const platform = await authHeaders(app)
    const patch = async (payload: Record<string, unknown>) => await app.inject({ method: 'PATCH', url: `/api/v1/organizations/${org.id}`, headers: platform, payload })

    expect((await app.inject({ method: 'DELETE', url: `/api/v1/organizations/${org.id}`, headers: platform })).statusCode).toBe(409)
    expect((await patch({ status: 'suspended' })).json().status).toBe('suspended')
    expect((await app.inject({ method: 'GET', url: '/o/pausing/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401)
    expect((await requestToken(app, org.admin.client_id, org.admin.client_secret, {}, undefined, '/o/pausing/oauth2/token')).statusCode).toBe(401)

    expect((await patch({ status: 'active' })).json().status).toBe('active')
    // Tokens from before the suspension stay dead; new ones work.
    expect((await app.inject({ method: 'GET', url: '/o/pausing/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401)
    const fresh = await tokenIn(app, 'pausing', org.admin.client_id, org.admin.client_secret)
    expect((await app.inject({ method: 'GET', url: '/o/pausing/api/v1/agents', headers: { authorization: `Bearer ${fresh}` } })).statusCode).toBe(200)

    expect((await app.inject({ method: 'PATCH', url: `/api/v1/organizations/00000000-0000-4000-8000-000000000000`, headers: platform, payload: { status: 'suspended' } })).statusCode).toBe(409)
    expect((await patch({ status: 'suspended' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/organizations/${org.id}`, headers: platform })).statusCode).toBe(204)
    expect((await app.inject({ method: 'GET', url: `/api/v1/organizations/${org.id}`, headers: platform })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: '/o/pausing/.well-known/openid-configuration' })).statusCode).toBe(404)
    const left = await ownerSql(app)`select (select count(*)::int from agents where org_id = ${org.id}) as agents, (select count(*)::int from audit_events where org_id = ${org.id}) as events`
    expect(left[0]).toMatchObject({ agents: 0 })
    expect(left[0]?.events).toBeGreaterThan(0)
    expect(await verifyChain(ownerSql(app), org.id)).toMatchObject({ ok: true })
    // Its slug is never reused.
    expect((await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: platform, payload: { slug: 'pausing', name: 'again' } })).statusCode).toBe(409)
    // Only platform administrators manage organizations.
    expect((await app.inject({ method: 'GET', url: '/api/v1/organizations', headers: await authHeaders(app, ['agents:write']) })).statusCode).toBe(403)
  })
})
