import { randomUUID } from 'node:crypto'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { issuerContextOf } from '../../plugins/tokens/issuer-context.js'
import type { App } from '../../src/app.js'
import { createTestDatabase, ownerSql, setupTestContext, type TestDatabase } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm } from '../support/oauth.js'
import { startTestIssuer, type TestIssuer } from '../support/test-issuer.js'

const context = setupTestContext()
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
const NO_MATCH = 'the assertion matches no federated credential'
// The test issuers listen on 127.0.0.1 over http.
const PRIVATE = { FEDERATION_ALLOW_PRIVATE_NETWORKS: 'true' }

const issuers: TestIssuer[] = []
const databases: TestDatabase[] = []
afterEach(async () => {
  await Promise.all(issuers.splice(0).map((issuer) => issuer.close()))
  await Promise.all(databases.splice(0).map((database) => database.drop()))
})

async function issuer (alg: 'RS256' | 'ES256' = 'RS256'): Promise<TestIssuer> {
  const started = await startTestIssuer(alg)
  issuers.push(started)
  return started
}

async function trust (app: App, agentId: string, rule: Record<string, unknown>) {
  return await app.inject({ method: 'POST', url: `/api/v1/agents/${agentId}/credentials`, headers: await authHeaders(app), payload: { type: 'federated', ...rule } })
}

async function exchange (app: App, assertion: string, form: Record<string, string> = {}, headers: Record<string, string> = {}) {
  return await postForm(app, '/oauth2/token', { grant_type: JWT_BEARER, assertion, ...form }, headers)
}

/** A projected service-account token as the Kubernetes API server makes it (audience: this AgentIdP). */
function kubernetesClaims (app: App, namespace: string, name: string, uid: string): Record<string, unknown> {
  return {
    sub: `system:serviceaccount:${namespace}:${name}`,
    aud: [app.config.issuer],
    nbf: Math.floor(Date.now() / 1000),
    'kubernetes.io': { namespace, serviceaccount: { name, uid }, pod: { name: `${name}-7d9f8b-x2x1z`, uid: '0b5d3a4e-4c1e-4f41-9d5e-3c2f1a0b9e77' }, node: { name: 'node-1', uid: '9f1b2c3d-0000-4000-8000-000000000001' } }
  }
}

/** A GitHub Actions OIDC token's claims (audience: what the workflow asked for). */
function githubClaims (repository: string, repositoryId: string, audience: string): Record<string, unknown> {
  return {
    sub: `repo:${repository}:ref:refs/heads/main`,
    aud: audience,
    ref: 'refs/heads/main',
    repository,
    repository_id: repositoryId,
    repository_owner: repository.split('/')[0],
    repository_owner_id: '1000',
    run_id: '42',
    workflow: 'deploy',
    event_name: 'push',
    job_workflow_ref: `${repository}/.github/workflows/deploy.yml@refs/heads/main`,
    runner_environment: 'github-hosted'
  }
}

describe('registering a federated credential', () => {
  it('stores the trust rule, lists it, records it, and refuses a second live one with the same issuer, subject and claims', async () => {
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'ci deployer', scopes: ['deploy:write'] })
    const rule = { issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:acme/api:ref:refs/heads/main', audience: 'https://github.com/acme', claims: { repository_id: '123' } }
    const created = await trust(app, agent.id, rule)
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json()).toMatchObject({ type: 'federated', client_id: agent.client_id, ...rule })
    expect(created.json().client_secret).toBeUndefined()
    const listed = (await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app) })).json().items
    expect(listed).toEqual([expect.objectContaining({ id: created.json().id, type: 'federated', ...rule })])
    const [event] = await auditEvents(app, 'credential.created')
    expect(event?.data).toMatchObject({ credential_id: created.json().id, credential_type: 'federated', issuer: rule.issuer, subject: rule.subject, claims: rule.claims })

    expect((await trust(app, agent.id, rule)).statusCode).toBe(409)
    // Other claims make another rule; once the first is revoked, the same rule may be registered again.
    expect((await trust(app, agent.id, { ...rule, claims: { repository_id: '124' } })).statusCode).toBe(201)
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${created.json().id}`, headers: await authHeaders(app) })
    expect((await trust(app, agent.id, rule)).statusCode).toBe(201)
  })

  it('refuses incomplete or unsafe rules with a 400 naming the member', async () => {
    const app = await context.build()
    const agent = await createAgent(app)
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ subject: 'x' }, 'body/issuer'],
      [{ issuer: 'https://issuer.example' }, 'body/subject'],
      [{ issuer: 'https://issuer.example', subject: 'x', claims: { aud: 'y' } }, 'body/claims'],
      [{ issuer: 'https://issuer.example', subject: 'x', jwks: { keys: [await exportJWK(privateKey)] } }, 'body/jwks'],
      [{ issuer: 'https://issuer.example', subject: 'x', jwks: { keys: [] } }, 'body/jwks'],
      [{ issuer: 'https://issuer.example', subject: 'x', jwks_uri: 'https://issuer.example/keys', jwks: { keys: [] } }, 'body/jwks_uri'],
      // Discovery and key sets over https to public addresses only, unless FEDERATION_ALLOW_PRIVATE_NETWORKS.
      [{ issuer: 'http://issuer.example', subject: 'x' }, 'body/issuer'],
      [{ issuer: 'spiffe://example.org', subject: 'x' }, 'body/issuer'],
      [{ issuer: 'https://issuer.example', subject: 'x', jwks_uri: 'https://127.0.0.1/keys' }, 'body/jwks_uri'],
      [{ issuer: 'https://issuer.example', subject: 'x', jwks_uri: 'https://[::ffff:169.254.169.254]/keys' }, 'body/jwks_uri']
    ]
    for (const [rule, location] of cases) {
      const response = await trust(app, agent.id, rule)
      expect(response.statusCode, JSON.stringify(rule)).toBe(400)
      expect(response.json().errors?.[0]?.location, response.body).toBe(location)
    }
    // Members of a federated credential on another type are refused, not ignored.
    const mixed = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload: { issuer: 'https://issuer.example' } })
    expect(mixed.statusCode).toBe(400)
  })
})

describe('the jwt-bearer grant (RFC 7523 §2.1)', () => {
  it('exchanges a Kubernetes service-account token for a token of the agent, without client authentication, once per jti', async () => {
    const cluster = await issuer('RS256')
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'payments', scopes: ['payments:read', 'payments:write'] })
    const uid = '6a1f0c7e-8d5b-4b8e-9a37-2f6d4c1e0b55'
    const credential = (await trust(app, agent.id, { issuer: cluster.url, subject: 'system:serviceaccount:prod:payments', claims: { 'kubernetes.io': { namespace: 'prod', serviceaccount: { uid } } } })).json()
    const saToken = await cluster.sign(kubernetesClaims(app, 'prod', 'payments', uid))

    const response = await exchange(app, saToken, { scope: 'payments:read' })
    expect(response.statusCode, response.body).toBe(200)
    const claims = claimsOf(response.json().access_token)
    expect(claims).toMatchObject({ iss: app.config.issuer, sub: agent.id, client_id: agent.client_id, scope: 'payments:read', credential_id: credential.id })
    // Discovery, then the key set: nothing else was fetched.
    expect(cluster.requests).toEqual(['/.well-known/openid-configuration', '/keys'])
    const [issued] = await auditEvents(app, 'token.issued')
    expect(issued?.data).toMatchObject({ grant_type: JWT_BEARER, credential_id: credential.id, federated: { iss: cluster.url, sub: 'system:serviceaccount:prod:payments', credential_id: credential.id } })

    const replayed = await exchange(app, saToken)
    expect(replayed.statusCode).toBe(400)
    expect(replayed.json()).toEqual({ error: 'invalid_grant', error_description: 'assertion jti was already used' })
    // The agent's scopes bound the grant; the agent's resources bound its audience.
    expect((await exchange(app, await cluster.sign(kubernetesClaims(app, 'prod', 'payments', uid)), { scope: 'admin' })).json().error).toBe('invalid_scope')
    expect((await exchange(app, await cluster.sign(kubernetesClaims(app, 'prod', 'payments', uid)), { resource: 'https://elsewhere.example' })).json().error).toBe('invalid_target')
    // Another service account's uid (same name, recreated) matches no rule.
    const recreated = await exchange(app, await cluster.sign(kubernetesClaims(app, 'prod', 'payments', '00000000-0000-4000-8000-00000000beef')))
    expect(recreated.json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })

    // Revoking the credential ends the trust at once.
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id}`, headers: await authHeaders(app) })
    expect((await exchange(app, await cluster.sign(kubernetesClaims(app, 'prod', 'payments', uid)))).json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
  })

  it('exchanges a GitHub Actions token whose audience and repository_id the rule names', async () => {
    const github = await issuer('RS256')
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'deployer', scopes: ['deploy:write'] })
    await trust(app, agent.id, { issuer: github.url, subject: 'repo:acme/api:ref:refs/heads/main', audience: 'https://github.com/acme', claims: { repository_id: '892341' } })

    const ok = await exchange(app, await github.sign(githubClaims('acme/api', '892341', 'https://github.com/acme')))
    expect(ok.statusCode, ok.body).toBe(200)
    expect(claimsOf(ok.json().access_token)).toMatchObject({ sub: agent.id, scope: 'deploy:write' })
    // A repository of the same name re-created (another id), another audience, a branch under another name: refused alike.
    for (const claims of [githubClaims('acme/api', '999999', 'https://github.com/acme'), githubClaims('acme/api', '892341', app.config.issuer), { ...githubClaims('acme/api', '892341', 'https://github.com/acme'), sub: 'repo:acme/api:ref:refs/heads/main-evil' }]) {
      const refused = await exchange(app, await github.sign(claims))
      expect(refused.statusCode).toBe(400)
      expect(refused.json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
    }
  })

  it('exchanges a SPIFFE JWT-SVID verified against a trust bundle given as jwks, fetching nothing', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const bundleKey = { ...await exportJWK(publicKey), kid: 'spire-2026-12', use: 'jwt-svid' }
    const app = await context.build()
    const agent = await createAgent(app, { name: 'ledger', scopes: ['ledger:read'] })
    // An issuer no one could fetch from: with jwks given, nothing is.
    const spire = 'https://spire.unreachable.invalid'
    const registered = await trust(app, agent.id, { issuer: spire, subject: 'spiffe://example.org/ns/prod/sa/ledger', jwks: { keys: [bundleKey] } })
    expect(registered.statusCode, registered.body).toBe(201)
    const now = Math.floor(Date.now() / 1000)
    const svid = await new SignJWT({ iss: spire, sub: 'spiffe://example.org/ns/prod/sa/ledger', aud: [app.config.issuer], exp: now + 300, iat: now })
      .setProtectedHeader({ alg: 'ES256', kid: 'spire-2026-12', typ: 'JWT' }).sign(privateKey)
    const response = await exchange(app, svid)
    expect(response.statusCode, response.body).toBe(200)
    expect(claimsOf(response.json().access_token).sub).toBe(agent.id)
    // No jti: nothing to mark, so the same SVID may be exchanged again while it lives.
    expect((await exchange(app, svid)).statusCode).toBe(200)
  })

  it('exchanges another AgentIdP\'s access token, its keys found through that AgentIdP\'s discovery', async () => {
    const app = await context.build(PRIVATE)
    // The other AgentIdP: a second instance with its own database, keys and in-process store, listening on a port.
    const otherDatabase = await createTestDatabase()
    databases.push(otherDatabase)
    const port = await freePort()
    const otherIssuer = `http://127.0.0.1:${port}`
    const other = await context.build({ ISSUER: otherIssuer, PORT: String(port), DATABASE_URL: otherDatabase.url, DATABASE_POOL_SIZE: String(otherDatabase.poolSize), REDIS_URL: undefined, DATA_DIR: `${context.dataDir}/other-${port}`, BOOTSTRAP_CLIENT_ID: undefined, BOOTSTRAP_CLIENT_SECRET: undefined })
    await other.listen({ port, host: '127.0.0.1' })
    const remoteAgent = await createAgent(other, { name: 'remote', scopes: ['reports:read'], resources: [app.config.issuer] })
    const remoteSecret = (await createCredential(other, remoteAgent.id)).client_secret as string
    const remoteToken = (await postForm(other, '/oauth2/token', { grant_type: 'client_credentials', resource: app.config.issuer }, { authorization: basicAuth(remoteAgent.client_id, remoteSecret) })).json().access_token as string

    const agent = await createAgent(app, { name: 'local stand-in', scopes: ['reports:read'] })
    await trust(app, agent.id, { issuer: otherIssuer, subject: remoteAgent.id, claims: { client_id: remoteAgent.client_id } })
    const response = await exchange(app, remoteToken)
    expect(response.statusCode, response.body).toBe(200)
    expect(claimsOf(response.json().access_token)).toMatchObject({ sub: agent.id, client_id: agent.client_id, scope: 'reports:read' })
    expect((await exchange(app, remoteToken)).json().error_description).toBe('assertion jti was already used')
  })

  it('lets the agent\'s own client authenticate, and refuses another client', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const app = await context.build()
    const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const secret = (await createCredential(app, agent.id)).client_secret as string
    const stranger = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const strangerSecret = (await createCredential(app, stranger.id)).client_secret as string
    await trust(app, agent.id, { issuer: 'https://svid.example', subject: 'spiffe://example.org/x', jwks: { keys: [{ ...await exportJWK(publicKey), kid: 'k1' }] } })
    const sign = async (): Promise<string> => await new SignJWT({ iss: 'https://svid.example', sub: 'spiffe://example.org/x', aud: app.config.issuer }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuedAt().setExpirationTime('5m').sign(privateKey)
    expect((await exchange(app, await sign(), {}, { authorization: basicAuth(agent.client_id, secret) })).statusCode).toBe(200)
    const other = await exchange(app, await sign(), {}, { authorization: basicAuth(stranger.client_id, strangerSecret) })
    expect(other.json()).toEqual({ error: 'invalid_grant', error_description: 'the assertion stands for another agent than the authenticated client' })
    // Client credentials that do not verify are invalid_client, as on every grant.
    expect((await exchange(app, await sign(), {}, { authorization: basicAuth(agent.client_id, 'wrong') })).statusCode).toBe(401)
  })

  it('refuses what RFC 7523 §3 refuses, with invalid_grant and no word on which trusts exist', async () => {
    const cluster = await issuer('RS256')
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const subject = 'system:serviceaccount:prod:app'
    await trust(app, agent.id, { issuer: cluster.url, subject })
    const now = Math.floor(Date.now() / 1000)
    const { privateKey: strangerKey } = await generateKeyPair('RS256', { extractable: true })
    const hmac = new TextEncoder().encode('a shared secret that is long enough for HS256!!')
    const unsigned = (claims: Record<string, unknown>): string => `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`
    const base = { sub: subject, aud: app.config.issuer }
    const cases: Array<[string, Promise<string> | string, string]> = [
      ['not a JWT', 'abc.def', 'assertion is not a signed JWT'],
      ['alg none', unsigned({ ...base, iss: cluster.url, exp: now + 60 }), 'assertion must be signed with one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA'],
      ['HS256', new SignJWT({ ...base, iss: cluster.url, exp: now + 60 }).setProtectedHeader({ alg: 'HS256' }).sign(hmac), 'assertion must be signed with one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA'],
      ['no sub', cluster.sign({ aud: app.config.issuer }), 'assertion must carry iss and sub'],
      ['unknown subject', cluster.sign({ ...base, sub: 'system:serviceaccount:prod:other' }), NO_MATCH],
      ['a stranger\'s key under the issuer\'s kid', cluster.sign(base, { key: strangerKey }), NO_MATCH],
      ['another audience', cluster.sign({ ...base, aud: 'https://somewhere.example' }), NO_MATCH],
      ['expired', cluster.sign({ ...base, iat: now - 600, exp: now - 60 }), 'assertion has expired'],
      ['not yet valid', cluster.sign({ ...base, nbf: now + 600 }), 'assertion claim nbf is missing or not valid now'],
      ['no exp', cluster.sign({ ...base, exp: undefined }), 'assertion claim exp is missing or not valid now'],
      ['made to live two days', cluster.sign(base, { lifetimeS: 2 * 86_400 }), 'assertion must expire at most 86400 seconds after it was issued'],
      ['jti not a string', cluster.sign({ ...base, jti: 7 }), 'assertion jti must be a string of at most 256 characters']
    ]
    for (const [name, token, description] of cases) {
      const response = await exchange(app, await token)
      expect(response.statusCode, name).toBe(400)
      expect(response.json(), name).toEqual({ error: 'invalid_grant', error_description: description })
    }
    const missing = await postForm(app, '/oauth2/token', { grant_type: JWT_BEARER })
    expect(missing.json().error).toBe('invalid_request')
    // A suspended agent's trusts match nothing.
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    expect((await exchange(app, await cluster.sign(base))).json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
  })

  it('refuses a token that two trusts would accept', async () => {
    const cluster = await issuer('ES256')
    const app = await context.build(PRIVATE)
    const subject = 'system:serviceaccount:prod:shared'
    for (const claims of [{ 'kubernetes.io': { namespace: 'prod' } }, { 'kubernetes.io': { serviceaccount: { name: 'shared' } } }]) {
      const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
      expect((await trust(app, agent.id, { issuer: cluster.url, subject, claims })).statusCode).toBe(201)
    }
    const response = await exchange(app, await cluster.sign({ sub: subject, aud: app.config.issuer, 'kubernetes.io': { namespace: 'prod', serviceaccount: { name: 'shared' } } }))
    expect(response.json()).toEqual({ error: 'invalid_grant', error_description: 'the assertion matches more than one federated credential' })
  })

  it('fetches nothing for an unknown issuer, never follows jku or x5u, and fetches one key set for 100 unknown kids', async () => {
    const cluster = await issuer('RS256')
    const attacker = await issuer('RS256')
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const subject = 'system:serviceaccount:prod:app'
    await trust(app, agent.id, { issuer: cluster.url, subject })

    const unknown = await exchange(app, await attacker.sign({ sub: subject, aud: app.config.issuer }))
    expect(unknown.json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
    // Signed by the attacker under the trusted issuer's name, pointing at the attacker's keys.
    const pointed = await exchange(app, await attacker.sign({ iss: cluster.url, sub: subject, aud: app.config.issuer }, { header: { jku: attacker.jwksUri, x5u: `${attacker.url}/cert.pem`, kid: attacker.kid } }))
    expect(pointed.json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
    expect(attacker.requests).toEqual([])

    // 100 tokens naming kids the issuer never had, at once: discovery once, the key set once.
    const { privateKey } = await generateKeyPair('RS256')
    const forged = await Promise.all(Array.from({ length: 100 }, async (_, index) => await cluster.sign({ sub: subject, aud: app.config.issuer }, { key: privateKey, header: { kid: `made-up-${index}` } })))
    const answers = await Promise.all(forged.map(async (token) => await exchange(app, token)))
    expect(answers.every((answer) => answer.statusCode === 400 && answer.json().error === 'invalid_grant')).toBe(true)
    expect(cluster.requests).toEqual(['/.well-known/openid-configuration', '/keys'])
    // The real kid verifies from the cached set.
    expect((await exchange(app, await cluster.sign({ sub: subject, aud: app.config.issuer }))).statusCode).toBe(200)
    expect(cluster.requests).toHaveLength(2)
  })

  it('refuses to fetch keys from loopback or private addresses unless FEDERATION_ALLOW_PRIVATE_NETWORKS, checked when connecting', async () => {
    const cluster = await issuer('RS256')
    const app = await context.build()
    const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const subject = 'system:serviceaccount:prod:app'
    // A name, not a literal address, passes registration; the address it resolves to is checked when connecting.
    const port = new URL(cluster.url).port
    expect((await trust(app, agent.id, { issuer: 'https://cluster.example', subject, jwks_uri: `https://localhost:${port}/keys` })).statusCode).toBe(201)
    const token = await cluster.sign({ iss: 'https://cluster.example', sub: subject, aud: app.config.issuer })
    const refused = await exchange(app, token)
    expect(refused.statusCode).toBe(400)
    expect(refused.json()).toEqual({ error: 'invalid_grant', error_description: 'the issuer\'s keys may not be fetched: localhost resolves to no public address; retry later' })
    expect((await exchange(app, token)).json().error_description).toMatch(/may not be fetched/)
    expect(cluster.requests).toEqual([])
  })

  it('asks an issuer whose key set fails once a cooldown, not once a request', async () => {
    const cluster = await issuer('RS256')
    const app = await context.build(PRIVATE)
    const agent = await createAgent(app, { name: 'workload', scopes: ['a:b'] })
    const subject = 'system:serviceaccount:prod:app'
    await trust(app, agent.id, { issuer: cluster.url, subject, jwks_uri: `${cluster.url}/gone` })
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const response = await exchange(app, await cluster.sign({ sub: subject, aud: app.config.issuer }))
      expect(response.json()).toEqual({ error: 'invalid_grant', error_description: 'the issuer\'s keys could not be fetched; retry later' })
    }
    expect(cluster.requests).toEqual(['/gone'])
  })

  it('matches only the trusts of the organization the request speaks to', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const app = await context.build()
    const agent = await createAgent(app, { name: 'default-org workload', scopes: ['a:b'] })
    await trust(app, agent.id, { issuer: 'https://svid.example', subject: 'spiffe://example.org/w', jwks: { keys: [{ ...await exportJWK(publicKey), kid: 'k1' }] } })
    // A second organization, and requests that name it (a header stands in for the /o/{slug} routes to come).
    const orgId = randomUUID()
    await ownerSql(app)`insert into organizations (id, slug, name) values (${orgId}, ${`acme-${orgId.slice(0, 8)}`}, 'Acme')`
    const acme = issuerContextOf({ orgId, origin: app.config.issuer, basePath: '/o/acme', keys: app.keys, tokenAudience: `${app.config.issuer}/o/acme` })
    app.issuerFor = async (request: FastifyRequest) => request.headers['x-test-org'] === 'acme' ? acme : app.defaultIssuer
    const sign = async (aud: string): Promise<string> => await new SignJWT({ iss: 'https://svid.example', sub: 'spiffe://example.org/w', aud }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuedAt().setExpirationTime('5m').setJti(randomUUID()).sign(privateKey)
    const inAcme = await exchange(app, await sign(acme.issuer), {}, { 'x-test-org': 'acme' })
    expect(inAcme.json()).toEqual({ error: 'invalid_grant', error_description: NO_MATCH })
    expect((await exchange(app, await sign(app.config.issuer))).statusCode).toBe(200)
  })

  it('is listed in discovery', async () => {
    const app = await context.build()
    const discovery = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json()
    expect(discovery.grant_types_supported).toEqual(['client_credentials', JWT_BEARER, 'urn:ietf:params:oauth:grant-type:token-exchange'])
  })
})

async function freePort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
