import type { AddressInfo } from 'node:net'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose'
import * as oauth from 'oauth4webapi'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm, requestToken } from '../support/oauth.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()
const ISSUER = 'https://idp.example.com'
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
const JWT = 'urn:ietf:params:oauth:token-type:jwt'

interface Client { agent: Record<string, any>, clientId: string, secret: string, credentialId: string }

/** An agent with a client secret, in the organization whose API base is `base` ('' for the default). */
async function client (app: App, body: Record<string, unknown>, base = '', headers?: Record<string, string>): Promise<Client> {
  const created = await app.inject({ method: 'POST', url: `${base}/api/v1/agents`, headers: headers ?? await authHeaders(app), payload: body })
  expect(created.statusCode, created.body).toBe(201)
  const agent = created.json()
  const credential = await app.inject({ method: 'POST', url: `${base}/api/v1/agents/${agent.id}/credentials`, headers: headers ?? await authHeaders(app), payload: {} })
  expect(credential.statusCode, credential.body).toBe(201)
  return { agent, clientId: credential.json().client_id, secret: credential.json().client_secret, credentialId: credential.json().id }
}

async function delegate (app: App, subject: Client, actor: Client, scopes: string[], extra: Record<string, unknown> = {}, base = '', headers?: Record<string, string>): Promise<void> {
  const response = await app.inject({ method: 'POST', url: `${base}/api/v1/agents/${subject.agent.id}/delegations`, headers: headers ?? await authHeaders(app), payload: { actor_id: actor.agent.id, scopes, ...extra } })
  expect(response.statusCode, response.body).toBe(201)
}

async function tokenOf (app: App, who: Client, form: Record<string, string> = {}, url?: string): Promise<string> {
  const response = await requestToken(app, who.clientId, who.secret, form, undefined, url)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

async function exchange (app: App, caller: Client, form: Record<string, string | string[]>, url = '/oauth2/token') {
  return await postForm(app, url, { grant_type: GRANT, subject_token_type: ACCESS_TOKEN, ...form }, { authorization: basicAuth(caller.clientId, caller.secret) })
}

async function exchanged (app: App, caller: Client, form: Record<string, string | string[]>, url?: string): Promise<string> {
  const response = await exchange(app, caller, form, url)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

async function introspect (app: App, caller: Client, token: string, url = '/oauth2/introspect'): Promise<Record<string, any>> {
  const response = await postForm(app, url, { token }, { authorization: basicAuth(caller.clientId, caller.secret) })
  expect(response.statusCode, response.body).toBe(200)
  return response.json()
}

function expectOAuthError (response: { statusCode: number, body: string, json: () => any }, error: string, description?: RegExp): void {
  expect(response.statusCode, response.body).toBe(400)
  expect(response.json().error).toBe(error)
  if (description !== undefined) expect(response.json().error_description).toMatch(description)
}

/** A user-facing assistant (the subject), a scheduler acting for it, and a calendar tool acting after the scheduler. */
async function chain (app: App) {
  const assistant = await client(app, { name: 'assistant', scopes: ['calendar:read', 'calendar:write', 'mail:read'], resources: ['https://calendar.example.com'] })
  const scheduler = await client(app, { name: 'scheduler', scopes: ['jobs:run'], resources: ['https://calendar.example.com'] })
  const tool = await client(app, { name: 'calendar tool' })
  await delegate(app, assistant, scheduler, ['calendar:read', 'calendar:write'])
  await delegate(app, assistant, tool, ['calendar:read'])
  return { assistant, scheduler, tool }
}

describe('token exchange (RFC 8693) with oauth4webapi', () => {
  it('discovers the grant, exchanges an agent\'s token for a delegated one with act, bound to the caller\'s DPoP key', async () => {
    const app = await context.build({ ISSUER })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const local = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const options = { [oauth.customFetch]: async (url: string, init: any) => await fetch(url.replace(ISSUER, local), init), [oauth.allowInsecureRequests]: true }
    const { assistant, scheduler } = await chain(app)
    const issuer = new URL(ISSUER)
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options))
    expect(as.grant_types_supported).toContain(GRANT)

    const subjectToken = await tokenOf(app, assistant, { scope: 'calendar:read calendar:write mail:read' })
    const schedulerClient: oauth.Client = { client_id: scheduler.clientId }
    const keyPair = await oauth.generateKeyPair('ES256')
    const DPoP = oauth.DPoP(schedulerClient, keyPair)
    const response = await oauth.genericTokenEndpointRequest(as, schedulerClient, oauth.ClientSecretBasic(scheduler.secret), GRANT, {
      subject_token: subjectToken, subject_token_type: ACCESS_TOKEN, scope: 'calendar:read', resource: 'https://calendar.example.com'
    }, { ...options, DPoP })
    const token = await oauth.processGenericTokenEndpointResponse(as, schedulerClient, response)
    expect(token.token_type).toBe('dpop')
    expect(token.issued_token_type).toBe(ACCESS_TOKEN)
    expect(token.scope).toBe('calendar:read')
    const claims = claimsOf(token.access_token)
    const subjectClaims = claimsOf(subjectToken)
    expect(claims).toMatchObject({
      iss: ISSUER,
      sub: assistant.agent.id,
      client_id: scheduler.clientId,
      aud: 'https://calendar.example.com',
      act: { sub: scheduler.agent.id, iss: ISSUER, sub_profile: 'ai_agent' },
      cnf: { jkt: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)) },
      rests_on: [{ jti: subjectClaims.jti, credential_id: assistant.credentialId }]
    })
    expect(claims.act.act).toBeUndefined()
    expect(claims.exp).toBeLessThanOrEqual(subjectClaims.exp)

    // Introspection shows the chain and the binding.
    const introspected = await oauth.processIntrospectionResponse(as, schedulerClient, await oauth.introspectionRequest(as, schedulerClient, oauth.ClientSecretBasic(scheduler.secret), token.access_token, options))
    expect(introspected).toMatchObject({ active: true, sub: assistant.agent.id, token_type: 'DPoP', act: { sub: scheduler.agent.id, iss: ISSUER, sub_profile: 'ai_agent' } })

    // The exchange is an audit event naming the whole chain and the token it came from.
    const [event] = (await auditEvents(app, 'token.issued')).filter((row) => row.data.grant_type === GRANT)
    expect(event).toMatchObject({ agent_id: assistant.agent.id, actor: scheduler.clientId, data: { subject_jti: subjectClaims.jti, act: claims.act, scope: 'calendar:read', token_type: 'DPoP' } })
  })
})

describe('the delegation chain', () => {
  it('nests act newest first hop by hop, narrows scopes, never outlives the subject token, and stops at DELEGATION_MAX_DEPTH', async () => {
    const app = await context.build({ ISSUER, DELEGATION_MAX_DEPTH: '2' })
    const { assistant, scheduler, tool } = await chain(app)
    const subjectToken = await tokenOf(app, assistant)
    const hop1 = await exchanged(app, scheduler, { subject_token: subjectToken })
    expect(claimsOf(hop1).scope).toBe('calendar:read calendar:write')
    const hop2 = await exchanged(app, tool, { subject_token: hop1 })
    const claims = claimsOf(hop2)
    expect(claims).toMatchObject({
      sub: assistant.agent.id,
      client_id: tool.clientId,
      scope: 'calendar:read',
      act: { sub: tool.agent.id, iss: ISSUER, sub_profile: 'ai_agent', act: { sub: scheduler.agent.id, iss: ISSUER, sub_profile: 'ai_agent' } }
    })
    expect(claims.rests_on.map((entry: { jti: string }) => entry.jti)).toEqual([claimsOf(hop1).jti, claimsOf(subjectToken).jti])
    expect(claims.exp).toBeLessThanOrEqual(claimsOf(subjectToken).exp)
    // A third hop would be three agents deep: refused, never truncated.
    const third = await client(app, { name: 'third' })
    await delegate(app, assistant, third, ['calendar:read'])
    expectOAuthError(await exchange(app, third, { subject_token: hop2 }), 'invalid_request', /DELEGATION_MAX_DEPTH allows 2/)
    // Asking for more than the chain carries is invalid_scope: scopes never widen.
    expectOAuthError(await exchange(app, tool, { subject_token: hop1, scope: 'calendar:write' }), 'invalid_scope')
  })

  it('exchanges a token for oneself without act, narrowed, and never wider than what was held', async () => {
    const app = await context.build({ ISSUER })
    const { assistant } = await chain(app)
    const own = await tokenOf(app, assistant, { scope: 'calendar:read mail:read' })
    const narrowed = await exchange(app, assistant, { subject_token: own, scope: 'mail:read', resource: 'https://calendar.example.com' })
    expect(narrowed.statusCode, narrowed.body).toBe(200)
    const claims = claimsOf(narrowed.json().access_token)
    expect(claims).toMatchObject({ sub: assistant.agent.id, scope: 'mail:read', aud: 'https://calendar.example.com' })
    expect(claims.act).toBeUndefined()
    expectOAuthError(await exchange(app, assistant, { subject_token: own, scope: 'calendar:write' }), 'invalid_scope')
    expectOAuthError(await exchange(app, assistant, { subject_token: own, resource: 'https://elsewhere.example.com' }), 'invalid_target')
    expectOAuthError(await exchange(app, assistant, { subject_token: own, audience: 'sts.amazonaws.com' }), 'invalid_target')
  })
})

describe('refusals (RFC 8693 §2.2.2)', () => {
  it('invalid_grant without a delegation, whether or not the subject exists; invalid_request for malformed requests', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler } = await chain(app)
    const stranger = await client(app, { name: 'stranger' })
    const subjectToken = await tokenOf(app, assistant)
    const noDelegation = await exchange(app, stranger, { subject_token: subjectToken })
    expectOAuthError(noDelegation, 'invalid_grant', /^not allowed to act for this subject$/)
    const ghost = await mintAccessToken(app, { clientId: 'ghost', scopes: ['calendar:read'] })
    expect((await exchange(app, stranger, { subject_token: ghost })).json()).toEqual(noDelegation.json())

    expectOAuthError(await exchange(app, scheduler, { subject_token: 'not-a-token' }), 'invalid_grant', /subject_token is not valid/)
    expectOAuthError(await exchange(app, scheduler, { subject_token: await mintAccessToken(app, { sub: assistant.agent.id, expiresIn: -60 }) }), 'invalid_grant')
    expectOAuthError(await postForm(app, '/oauth2/token', { grant_type: GRANT, subject_token: subjectToken }, { authorization: basicAuth(scheduler.clientId, scheduler.secret) }), 'invalid_request')
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' }), 'invalid_request')
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 'invalid_request')
    expectOAuthError(await exchange(app, scheduler, { subject_token: [subjectToken, subjectToken] }), 'invalid_request')
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken, actor_token_type: ACCESS_TOKEN }), 'invalid_request')
    // The actor token must be the caller's own.
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken, actor_token: await tokenOf(app, stranger), actor_token_type: ACCESS_TOKEN }), 'invalid_grant', /actor_token/)
    const withActor = await exchange(app, scheduler, { subject_token: subjectToken, actor_token: await tokenOf(app, scheduler), actor_token_type: ACCESS_TOKEN })
    expect(withActor.statusCode, withActor.body).toBe(200)
    // Without client authentication there is no exchange.
    const anonymous = await postForm(app, '/oauth2/token', { grant_type: GRANT, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN })
    expect(anonymous.statusCode).toBe(401)
  })

  it('an expired or removed delegation allows nothing, and may_act narrows who may act', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler, tool } = await chain(app)
    const subjectToken = await tokenOf(app, assistant)
    const [delegation] = (await app.inject({ method: 'GET', url: `/api/v1/agents/${assistant.agent.id}/delegations`, headers: await authHeaders(app) })).json().items
    // Expired: moved into the past behind the API's back.
    await app.sql.begin(async (tx) => {
      await tx`select set_config('agentidp.org_id', '00000000-0000-4000-8000-000000000000', true)`
      await tx`update agent_delegations set expires_at = now() - interval '1 second' where id = ${delegation.id}`
    })
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken }), 'invalid_grant', /not allowed/)
    const removed = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${assistant.agent.id}/delegations/${delegation.id}`, headers: await authHeaders(app) })
    expect(removed.statusCode).toBe(204)
    expectOAuthError(await exchange(app, scheduler, { subject_token: subjectToken }), 'invalid_grant', /not allowed/)

    // may_act names the tool alone: the tool may act, the scheduler (delegated again) may not.
    await delegate(app, assistant, scheduler, ['calendar:read'])
    const narrowed = await mintAccessToken(app, { sub: assistant.agent.id, clientId: assistant.clientId, scopes: ['calendar:read'], claims: { may_act: { sub: tool.agent.id, iss: ISSUER } } })
    expectOAuthError(await exchange(app, scheduler, { subject_token: narrowed }), 'invalid_grant', /not allowed/)
    expect((await exchange(app, tool, { subject_token: narrowed })).statusCode).toBe(200)
  })
})

describe('revocation cascades', () => {
  it('revoking the subject token kills every token exchanged from it, down the chain', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler, tool } = await chain(app)
    const subjectToken = await tokenOf(app, assistant)
    const hop1 = await exchanged(app, scheduler, { subject_token: subjectToken })
    const hop2 = await exchanged(app, tool, { subject_token: hop1 })
    expect((await introspect(app, tool, hop2)).active).toBe(true)
    const revoked = await postForm(app, '/oauth2/revoke', { token: subjectToken }, { authorization: basicAuth(assistant.clientId, assistant.secret) })
    expect(revoked.statusCode).toBe(200)
    expect(await introspect(app, scheduler, hop1)).toEqual({ active: false })
    expect(await introspect(app, tool, hop2)).toEqual({ active: false })
    expectOAuthError(await exchange(app, tool, { subject_token: hop1 }), 'invalid_grant', /subject_token is not valid/)
  })

  it('suspending any agent of the chain kills the tokens it acted in', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler, tool } = await chain(app)
    const other = await client(app, { name: 'other' })
    await delegate(app, assistant, other, ['calendar:read'])
    const subjectToken = await tokenOf(app, assistant)
    const hop1 = await exchanged(app, scheduler, { subject_token: subjectToken })
    const hop2 = await exchanged(app, tool, { subject_token: hop1 })
    const side = await exchanged(app, other, { subject_token: subjectToken })
    // The scheduler, in the middle of hop2's chain.
    const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${scheduler.agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    expect(suspended.statusCode).toBe(200)
    expect(await introspect(app, tool, hop2)).toEqual({ active: false })
    // A token whose chain does not hold the scheduler lives on, and so does the subject token.
    expect((await introspect(app, other, side)).active).toBe(true)
    expect((await introspect(app, assistant, subjectToken)).active).toBe(true)
  })

  it('revoking the credential a token in the chain was issued against kills the exchanged tokens', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler } = await chain(app)
    const subjectToken = await tokenOf(app, assistant)
    const hop1 = await exchanged(app, scheduler, { subject_token: subjectToken })
    const spare = await createCredential(app, assistant.agent.id)
    expect(spare.id).not.toBe(assistant.credentialId)
    const revoked = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${assistant.agent.id}/credentials/${assistant.credentialId}`, headers: await authHeaders(app) })
    expect(revoked.statusCode).toBe(204)
    expect(await introspect(app, scheduler, hop1)).toEqual({ active: false })
    // The scheduler's own credential, the one hop1 was issued against, is untouched and its own tokens live.
    expect((await introspect(app, scheduler, await tokenOf(app, scheduler))).active).toBe(true)
  })
  it('cascades the same when Redis is down and PostgreSQL answers alone', async () => {
    const app = await context.build({ ISSUER, REDIS_URL: 'redis://127.0.0.1:1' })
    const { assistant, scheduler, tool } = await chain(app)
    const subjectToken = await tokenOf(app, assistant)
    const hop1 = await exchanged(app, scheduler, { subject_token: subjectToken })
    const hop2 = await exchanged(app, tool, { subject_token: hop1 })
    expect((await introspect(app, tool, hop2)).active).toBe(true)
    // The scheduler's credential, the one hop1 was issued against: hop2 rests on hop1.
    const revoked = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${scheduler.agent.id}/credentials/${scheduler.credentialId}`, headers: await authHeaders(app) })
    expect(revoked.statusCode).toBe(204)
    expect(await introspect(app, tool, hop2)).toEqual({ active: false })
    const fresh = await exchanged(app, tool, { subject_token: subjectToken })
    await postForm(app, '/oauth2/revoke', { token: subjectToken }, { authorization: basicAuth(assistant.clientId, assistant.secret) })
    expect(await introspect(app, tool, fresh)).toEqual({ active: false })
  })
})

describe('inside an organization', () => {
  it('delegates and exchanges within the organization, and refuses a subject token of another issuer', async () => {
    const app = await context.build({ ISSUER })
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'acme-exchange', name: 'Acme' } })
    expect(created.statusCode, created.body).toBe(201)
    const admin = created.json().admin
    const base = '/o/acme-exchange'
    const adminToken = (await requestToken(app, admin.client_id, admin.client_secret, {}, undefined, `${base}/oauth2/token`)).json().access_token
    const headers = { authorization: `Bearer ${adminToken}` }
    const subject = await client(app, { name: 'assistant', scopes: ['calendar:read'] }, base, headers)
    const actor = await client(app, { name: 'scheduler' }, base, headers)
    await delegate(app, subject, actor, ['calendar:read'], {}, base, headers)
    const subjectToken = await tokenOf(app, subject, {}, `${base}/oauth2/token`)
    const token = await exchanged(app, actor, { subject_token: subjectToken }, `${base}/oauth2/token`)
    expect(claimsOf(token)).toMatchObject({ iss: `${ISSUER}/o/acme-exchange`, sub: subject.agent.id, act: { sub: actor.agent.id, iss: `${ISSUER}/o/acme-exchange` } })
    expect(await introspect(app, actor, token, `${base}/oauth2/introspect`)).toMatchObject({ active: true, act: { sub: actor.agent.id } })
    // A token of the default issuer is no subject token here.
    const outsider = await client(app, { name: 'outsider', scopes: ['calendar:read'] })
    expectOAuthError(await exchange(app, actor, { subject_token: await tokenOf(app, outsider) }, `${base}/oauth2/token`), 'invalid_grant', /subject_token is not valid/)
    // Revoking the subject token inside the organization cascades there too.
    await postForm(app, `${base}/oauth2/revoke`, { token: subjectToken }, { authorization: basicAuth(subject.clientId, subject.secret) })
    expect(await introspect(app, actor, token, `${base}/oauth2/introspect`)).toEqual({ active: false })
  })
})

describe('workload JWTs for cloud federation', () => {
  it('issues a short-lived JWT for one of the agent\'s audiences that verifies through discovery and the JWKS', async () => {
    const app = await context.build({ ISSUER })
    const workload = await client(app, { name: 'batch job', scopes: ['jobs:run'], audiences: ['sts.amazonaws.com', 'api://AzureADTokenExchange'] })
    expect(workload.agent.audiences).toEqual(['sts.amazonaws.com', 'api://AzureADTokenExchange'])
    const own = await tokenOf(app, workload)
    const response = await exchange(app, workload, { subject_token: own, requested_token_type: JWT, audience: 'sts.amazonaws.com' })
    expect(response.statusCode, response.body).toBe(200)
    const body = response.json()
    expect(body).toMatchObject({ issued_token_type: JWT, token_type: 'N_A' })
    expect(body.scope).toBeUndefined()
    expect(decodeProtectedHeader(body.access_token).typ).toBe('JWT')

    const discovery = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })).json()
    const jwks = (await app.inject({ method: 'GET', url: new URL(discovery.jwks_uri).pathname })).json()
    const { payload } = await jwtVerify(body.access_token, createLocalJWKSet(jwks), { issuer: discovery.issuer, audience: 'sts.amazonaws.com', typ: 'JWT' })
    expect(Object.keys(payload).sort()).toEqual(['aud', 'exp', 'iat', 'iss', 'jti', 'sub'])
    expect(payload).toMatchObject({ sub: workload.agent.id, aud: 'sts.amazonaws.com' })
    expect((payload.exp as number) - (payload.iat as number)).toBeLessThanOrEqual(3600)
    expect(payload.exp).toBeLessThanOrEqual(claimsOf(own).exp)
    expect(body.expires_in).toBe((payload.exp as number) - (payload.iat as number))
    const [event] = (await auditEvents(app, 'token.issued')).filter((row) => row.data.issued_token_type === JWT)
    expect(event).toMatchObject({ agent_id: workload.agent.id, data: { aud: 'sts.amazonaws.com', jti: payload.jti, subject_jti: claimsOf(own).jti } })

    // It is no access token of this server.
    const call = await app.inject({ method: 'GET', url: `/api/v1/agents/${workload.agent.id}`, headers: { authorization: `Bearer ${body.access_token}` } })
    expect(call.statusCode).toBe(401)
  })

  it('refuses an audience the agent does not list, a missing one, and anyone else\'s subject token', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler } = await chain(app)
    const patched = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${scheduler.agent.id}`, headers: await authHeaders(app), payload: { audiences: ['sts.amazonaws.com'] } })
    expect(patched.statusCode, patched.body).toBe(200)
    expect(patched.json().audiences).toEqual(['sts.amazonaws.com'])
    const own = await tokenOf(app, scheduler)
    expectOAuthError(await exchange(app, scheduler, { subject_token: own, requested_token_type: JWT, audience: 'api://AzureADTokenExchange' }), 'invalid_target')
    expectOAuthError(await exchange(app, scheduler, { subject_token: own, requested_token_type: JWT, audience: ['sts.amazonaws.com', 'sts.amazonaws.com.cn'] }), 'invalid_target')
    expectOAuthError(await exchange(app, scheduler, { subject_token: own, requested_token_type: JWT }), 'invalid_request')
    // For another agent, even with a delegation: the workload JWT's sub is always the caller.
    expectOAuthError(await exchange(app, scheduler, { subject_token: await tokenOf(app, assistant), requested_token_type: JWT, audience: 'sts.amazonaws.com' }), 'invalid_request')
    // An audience name is printable, without spaces.
    const bad = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${scheduler.agent.id}`, headers: await authHeaders(app), payload: { audiences: ['two words'] } })
    expect(bad.statusCode).toBe(400)
  })
})

describe('acting for people signed in elsewhere', () => {
  const COMPANY = 'https://login.example.org'

  /** A company identity provider's key, and an ID token of it for a person. */
  async function companyIdp () {
    const { privateKey, publicKey } = await generateKeyPair('ES256')
    const jwk = { ...await exportJWK(publicKey), kid: 'company-1', alg: 'ES256' }
    const idToken = async (sub: string, claims: Record<string, unknown> = {}, aud = ISSUER): Promise<string> => await new SignJWT({ email: `${sub}@example.org`, ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'company-1' }).setIssuer(COMPANY).setSubject(sub).setAudience(aud).setIssuedAt().setExpirationTime('10m').sign(privateKey)
    return { jwks: { keys: [jwk] }, idToken }
  }

  async function trust (app: App, body: Record<string, unknown>) {
    return await app.inject({ method: 'POST', url: '/api/v1/subject-trusts', headers: await authHeaders(app), payload: body })
  }

  it('exchanges a person\'s ID token for a token with sub the qualified person and act the agent the trust lists', async () => {
    const app = await context.build({ ISSUER })
    const { assistant, scheduler } = await chain(app)
    const idp = await companyIdp()
    const created = await trust(app, { issuer: COMPANY, jwks: idp.jwks, actors: [{ agent_id: assistant.agent.id, scopes: ['calendar:read', 'mail:read'] }] })
    expect(created.statusCode, created.body).toBe(201)
    expect(created.json()).toMatchObject({ issuer: COMPANY, subject_id: 'issuer_sub', actors: [{ agent_id: assistant.agent.id }] })
    const idToken = await idp.idToken('alice')
    const response = await exchange(app, assistant, { subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:id_token', scope: 'calendar:read' })
    expect(response.statusCode, response.body).toBe(200)
    const token = response.json().access_token
    const claims = claimsOf(token)
    expect(claims).toMatchObject({ sub: `${COMPANY}#alice`, client_id: assistant.clientId, scope: 'calendar:read', act: { sub: assistant.agent.id, iss: ISSUER, sub_profile: 'ai_agent' } })
    expect(claims.exp).toBeLessThanOrEqual(claimsOf(idToken).exp)
    expect(await introspect(app, assistant, token)).toMatchObject({ active: true, sub: `${COMPANY}#alice`, act: { sub: assistant.agent.id } })
    const [event] = (await auditEvents(app, 'token.issued')).filter((row) => row.data.external !== undefined)
    expect(event).toMatchObject({ agent_id: assistant.agent.id, data: { external: { iss: COMPANY, sub: 'alice', trust_id: created.json().id }, act: { sub: assistant.agent.id } } })
    // It is for the person's resource servers, never for the management API.
    expect((await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401)

    // An agent the trust does not list, a token for another audience, a scope outside the trust's: refused.
    expectOAuthError(await exchange(app, scheduler, { subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 'invalid_grant', /not allowed to act for this subject/)
    expectOAuthError(await exchange(app, assistant, { subject_token: await idp.idToken('alice', {}, 'https://elsewhere.example.com'), subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 'invalid_grant')
    expectOAuthError(await exchange(app, assistant, { subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt', scope: 'calendar:write' }), 'invalid_scope')

    // Suspending the agent kills what it holds for the person; revoking works as for any token of its client.
    const second = await exchanged(app, assistant, { subject_token: idToken, subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' })
    const revoked = await postForm(app, '/oauth2/revoke', { token: second }, { authorization: basicAuth(assistant.clientId, assistant.secret) })
    expect(revoked.statusCode).toBe(200)
    expect(await introspect(app, assistant, second)).toEqual({ active: false })
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${assistant.agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    expect(await introspect(app, scheduler, token)).toEqual({ active: false })
  })

  it('names the person by a pairwise id when the trust says so, and grants no management scope to act for people', async () => {
    const app = await context.build({ ISSUER })
    const { assistant } = await chain(app)
    const idp = await companyIdp()
    const created = await trust(app, { issuer: COMPANY, jwks: idp.jwks, subject_id: 'pairwise', claims: { email: 'bob@example.org' }, actors: [{ agent_id: assistant.agent.id, scopes: ['calendar:read'] }] })
    expect(created.statusCode, created.body).toBe(201)
    const token = await exchanged(app, assistant, { subject_token: await idp.idToken('bob'), subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' })
    expect(claimsOf(token).sub).toMatch(/^urn:agentidp:pairwise:[A-Za-z0-9_-]{43}$/)
    // The trust's claims must match: another person of the same issuer is no subject here.
    expectOAuthError(await exchange(app, assistant, { subject_token: await idp.idToken('carol'), subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 'invalid_grant')

    const admin = await client(app, { name: 'admin-ish', scopes: ['agents:read', 'calendar:read'] })
    const management = await trust(app, { issuer: COMPANY, jwks: idp.jwks, actors: [{ agent_id: admin.agent.id, scopes: ['agents:read'] }] })
    expect(management.statusCode).toBe(400)
    // Claims one level deeper than JSON_MAX_DEPTH, down to a one-element array: refused, never unwrapped and stored.
    const tooDeep = await trust(app, { issuer: COMPANY, jwks: idp.jwks, claims: { deep: [[[[[[[['']]]]]]]] }, actors: [{ agent_id: assistant.agent.id, scopes: ['calendar:read'] }] })
    expect(tooDeep.statusCode, tooDeep.body).toBe(400)
    expect(tooDeep.body).toMatch(/nests more than 8 arrays and objects deep/)
    const listed = await app.inject({ method: 'GET', url: '/api/v1/subject-trusts', headers: await authHeaders(app) })
    expect(listed.json().items.map((item: { id: string }) => item.id)).toContain(created.json().id)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/subject-trusts/${created.json().id}`, headers: await authHeaders(app) })).statusCode).toBe(204)
    expectOAuthError(await exchange(app, assistant, { subject_token: await idp.idToken('bob'), subject_token_type: 'urn:ietf:params:oauth:token-type:jwt' }), 'invalid_grant')
    expect((await auditEvents(app, 'subject_trust.deleted')).map((row) => row.data.trust_id)).toEqual([created.json().id])
  })
})
