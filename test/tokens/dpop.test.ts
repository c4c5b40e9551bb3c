import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import * as oauth from 'oauth4webapi'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { loadSigningKeys } from '../../plugins/infra/keys.js'
import { accessTokenHash } from '../../plugins/tokens/dpop.js'
import { issuerContextOf } from '../../plugins/tokens/issuer-context.js'
import { LogCapture, setupTestContext } from '../helper.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm } from '../support/oauth.js'

const context = setupTestContext()
// The public URL clients use; the server listens elsewhere, as behind a reverse proxy: htu is built from ISSUER.
const ISSUER = 'https://idp.example.com'

interface DpopKey { privateKey: CryptoKey, publicKey: CryptoKey, jwk: JWK, jkt: string }

async function dpopKey (alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = await exportJWK(publicKey)
  return { privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk) }
}

interface ProofOptions { htm?: string, htu?: string, iat?: number, jti?: string, ath?: string, nonce?: string, typ?: string, alg?: string, jwk?: JWK, omit?: string[] }

/** A DPoP proof (RFC 9449 §4.2), valid for a token request unless options say otherwise. */
async function proof (key: DpopKey, options: ProofOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = {
    jti: options.jti ?? randomUUID(),
    htm: options.htm ?? 'POST',
    htu: options.htu ?? `${ISSUER}/oauth2/token`,
    iat: options.iat ?? Math.floor(Date.now() / 1000),
    ...(options.ath === undefined ? {} : { ath: options.ath }),
    ...(options.nonce === undefined ? {} : { nonce: options.nonce })
  }
  for (const name of options.omit ?? []) delete claims[name]
  return await new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? 'ES256', typ: options.typ ?? 'dpop+jwt', jwk: options.jwk ?? key.jwk }).sign(key.privateKey)
}

/** An agent that may read agents, with a client secret. */
async function agentWithSecret (app: App, body: Record<string, unknown> = {}) {
  const agent = await createAgent(app, { name: 'dpop agent', scopes: ['agents:read'], ...body })
  const credential = await createCredential(app, agent.id)
  return { agent, clientId: credential.client_id as string, secret: credential.client_secret as string }
}

async function tokenRequest (app: App, clientId: string, secret: string, headers: Record<string, string | string[]> = {}) {
  return await app.inject({
    method: 'POST',
    url: '/oauth2/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(clientId, secret), ...headers } as Record<string, string>,
    payload: 'grant_type=client_credentials'
  })
}

/** A DPoP-bound token for the agent, through the token endpoint. */
async function boundToken (app: App, clientId: string, secret: string, key: DpopKey): Promise<string> {
  const response = await tokenRequest(app, clientId, secret, { dpop: await proof(key) })
  expect(response.statusCode, response.body).toBe(200)
  expect(response.json().token_type).toBe('DPoP')
  return response.json().access_token
}

/** GET /api/v1/agents/{id} with a DPoP token and a proof for that request. */
async function managementCall (app: App, agentId: string, token: string, key: DpopKey, options: ProofOptions = {}, scheme = 'DPoP') {
  const url = `/api/v1/agents/${agentId}`
  const dpop = await proof(key, { htm: 'GET', htu: `${ISSUER}${url}`, ath: accessTokenHash(token), ...options })
  return await app.inject({ method: 'GET', url, headers: { authorization: `${scheme} ${token}`, dpop } })
}

function expectInvalidProof (response: { statusCode: number, body: string, json: () => any }, detail?: RegExp): void {
  expect(response.statusCode, response.body).toBe(400)
  expect(response.json().error).toBe('invalid_dpop_proof')
  if (detail !== undefined) expect(response.json().error_description).toMatch(detail)
}

/** A listening app whose ISSUER is the public URL above; oauth4webapi's requests to it are sent to the socket. */
async function listening (env: Record<string, string> = {}) {
  const app = await context.build({ ISSUER, ...env })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const local = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const customFetch = async (url: string, init: oauth.CustomFetchOptions<any, any>): Promise<Response> => await fetch(url.replace(ISSUER, local), init as RequestInit)
  const options = { [oauth.customFetch]: customFetch, [oauth.allowInsecureRequests]: true }
  return { app, options }
}

describe('RFC 9449 examples', () => {
  it('the ath of the RFC\'s access token, and the thumbprint of its sample key', async () => {
    // RFC 9449 §7.1 (figures 13 and 14): the access token and the ath of the proof sent with it.
    expect(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU')).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo')
    // RFC 9449 §4.1 (figure 4): the proof's key, and §6.1's cnf.jkt of a token bound to it.
    const rfcKey = { kty: 'EC', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA', crv: 'P-256' }
    expect(await calculateJwkThumbprint(rfcKey, 'sha256')).toBe('0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I')
  })
})

describe('DPoP with oauth4webapi, end to end', () => {
  it('discovers the algorithms, gets a DPoP-bound token, and calls the management API with it', async () => {
    const { app, options } = await listening()
    const { agent, clientId, secret } = await agentWithSecret(app)
    const issuer = new URL(ISSUER)
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options))
    expect(as.dpop_signing_alg_values_supported).toEqual(['ES256', 'ES384', 'Ed25519', 'EdDSA', 'PS256', 'RS256'])
    const client: oauth.Client = { client_id: clientId }
    for (const alg of ['ES256', 'Ed25519', 'PS256']) {
      const keyPair = await oauth.generateKeyPair(alg)
      const DPoP = oauth.DPoP(client, keyPair)
      const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), new URLSearchParams({ scope: 'agents:read' }), { ...options, DPoP })
      const token = await oauth.processClientCredentialsResponse(as, client, response)
      expect(token.token_type).toBe('dpop')
      expect(claimsOf(token.access_token).cnf).toEqual({ jkt: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)) })

      const call = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${ISSUER}/api/v1/agents/${agent.id}`), undefined, undefined, { ...options, DPoP })
      expect(call.status, alg).toBe(200)
      expect((await call.json()).id).toBe(agent.id)
      // A request with a query: htu is compared without it.
      const listed = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${ISSUER}/api/v1/agents?limit=1`), undefined, undefined, { ...options, DPoP })
      expect(listed.status).toBe(200)
    }
    const [issued] = (await auditEvents(app, 'token.issued')).slice(-1)
    expect(issued?.data).toMatchObject({ token_type: 'DPoP', jkt: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) })
  })

  it('DPOP_NONCE=required: the token endpoint and the management API answer use_dpop_nonce with a DPoP-Nonce, and the retry passes', async () => {
    const { app, options } = await listening({ DPOP_NONCE: 'required' })
    const { agent, clientId, secret } = await agentWithSecret(app)
    const issuer = new URL(ISSUER)
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options))
    const client: oauth.Client = { client_id: clientId }
    const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
    const grant = async () => await oauth.processClientCredentialsResponse(as, client, await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), new URLSearchParams(), { ...options, DPoP }))
    const first = await grant().catch((error: unknown) => error)
    expect(oauth.isDPoPNonceError(first)).toBe(true)
    expect((first as oauth.ResponseBodyError).response.headers.get('dpop-nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/)
    // oauth4webapi kept the nonce from the answer: the retry carries it.
    const token = await grant()
    expect(token.token_type).toBe('dpop')

    // The handle keeps the nonce per origin: the management API takes it too.
    const call = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${ISSUER}/api/v1/agents/${agent.id}`), undefined, undefined, { ...options, DPoP })
    expect(call.status).toBe(200)

    // A proof without a nonce, by hand: refused with the challenge and a nonce to use.
    const key = await dpopKey()
    const tokenForKey = (await tokenRequest(app, clientId, secret, { dpop: await proof(key) }))
    expect(tokenForKey.statusCode).toBe(400)
    expect(tokenForKey.json().error).toBe('use_dpop_nonce')
    const nonce = tokenForKey.headers['dpop-nonce'] as string
    const issued = await tokenRequest(app, clientId, secret, { dpop: await proof(key, { nonce }) })
    expect(issued.statusCode, issued.body).toBe(200)
    const accessToken = issued.json().access_token as string
    const withoutNonce = await managementCall(app, agent.id, accessToken, key)
    expect(withoutNonce.statusCode).toBe(401)
    expect(withoutNonce.headers['www-authenticate']).toMatch(/^DPoP realm="agentidp", error="use_dpop_nonce", error_description="[^"]+", algs="ES256 ES384 Ed25519 EdDSA PS256 RS256"$/)
    // The current minute's nonce: the one the token endpoint gave, unless the minute turned meanwhile.
    expect(withoutNonce.headers['dpop-nonce']).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await managementCall(app, agent.id, accessToken, key, { nonce })).statusCode).toBe(200)
    // A nonce of an earlier minute still passes, and the answer hands out the current one (RFC 9449 §8.2).
    const { createHmac, hkdfSync } = await import('node:crypto')
    const nonceKey = Buffer.from(hkdfSync('sha256', app.keys.current.privateKey.export({ type: 'pkcs8', format: 'der' }), '', 'agentidp dpop nonce', 32))
    const earlier = createHmac('sha256', nonceKey).update(`${ISSUER}\0${Math.floor(Date.now() / 60_000) - 1}`).digest('base64url')
    const renewed = await managementCall(app, agent.id, accessToken, key, { nonce: earlier })
    expect(renewed.statusCode).toBe(200)
    expect(renewed.headers['dpop-nonce']).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(renewed.headers['dpop-nonce']).not.toBe(earlier)
    const renewedAtToken = await tokenRequest(app, clientId, secret, { dpop: await proof(key, { nonce: earlier }) })
    expect(renewedAtToken.statusCode).toBe(200)
    expect(renewedAtToken.headers['dpop-nonce']).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(renewedAtToken.headers['dpop-nonce']).not.toBe(earlier)
    const tooOld = createHmac('sha256', nonceKey).update(`${ISSUER}\0${Math.floor(Date.now() / 60_000) - 5}`).digest('base64url')
    expect((await tokenRequest(app, clientId, secret, { dpop: await proof(key, { nonce: tooOld }) })).json().error).toBe('use_dpop_nonce')
    // A nonce this server did not make: use_dpop_nonce again, with one it did.
    const forged = await tokenRequest(app, clientId, secret, { dpop: await proof(key, { nonce: 'A'.repeat(43) }) })
    expect(forged.json().error).toBe('use_dpop_nonce')
    expect(forged.headers['dpop-nonce']).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })
})

describe('a resource server checking cnf with oauth4webapi (docs/guide/resource-servers.md)', () => {
  it('validateJwtAccessToken takes our DPoP token with its proof, and refuses it as Bearer or with another key', async () => {
    const { app, options } = await listening()
    const { clientId, secret } = await agentWithSecret(app)
    const issuer = new URL(ISSUER)
    const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, options))
    const key = await dpopKey()
    const token = await boundToken(app, clientId, secret, key)
    const resource = 'https://api.example.com/weather'
    const request = async (scheme: string, signer: DpopKey) => new Request(resource, { headers: { authorization: `${scheme} ${token}`, dpop: await proof(signer, { htm: 'GET', htu: resource, ath: accessTokenHash(token) }) } })
    const claims = await oauth.validateJwtAccessToken(as, await request('DPoP', key), ISSUER, options)
    expect(claims.cnf).toEqual({ jkt: key.jkt })
    await expect(oauth.validateJwtAccessToken(as, new Request(resource, { headers: { authorization: `Bearer ${token}` } }), ISSUER, options)).rejects.toThrow()
    await expect(oauth.validateJwtAccessToken(as, await request('DPoP', await dpopKey()), ISSUER, options)).rejects.toThrow()
  })
})

describe('the token endpoint', () => {
  it('binds the token to the proof\'s key: token_type DPoP, cnf.jkt; without a proof, Bearer as before', async () => {
    const app = await context.build({ ISSUER })
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const bound = await tokenRequest(app, clientId, secret, { dpop: await proof(key) })
    expect(bound.statusCode, bound.body).toBe(200)
    expect(bound.json()).toMatchObject({ token_type: 'DPoP', scope: 'agents:read' })
    expect(claimsOf(bound.json().access_token).cnf).toEqual({ jkt: key.jkt })
    const plain = await tokenRequest(app, clientId, secret)
    expect(plain.json().token_type).toBe('Bearer')
    expect(claimsOf(plain.json().access_token).cnf).toBeUndefined()
  })

  it('refuses a replayed proof: each jti once per key', async () => {
    const app = await context.build({ ISSUER })
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const once = await proof(key)
    expect((await tokenRequest(app, clientId, secret, { dpop: once })).statusCode).toBe(200)
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: once }), /used before/)
    // The same jti under another key is another proof.
    const jti = claimsOf(once).jti as string
    expect((await tokenRequest(app, clientId, secret, { dpop: await proof(await dpopKey(), { jti }) })).statusCode).toBe(200)
  })

  it('refuses a proof for another URL or method, never trusting Host; takes an htu with a query', async () => {
    const app = await context.build({ ISSUER })
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htu: 'https://evil.example/oauth2/token' }), host: 'evil.example' }), /htu must be https:\/\/idp\.example\.com\/oauth2\/token/)
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htu: `${ISSUER}/oauth2/introspect` }) }), /htu/)
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htm: 'GET' }) }), /htm must be POST/)
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htm: 'post' }) }), /htm/)
    // RFC 9449 §4.3: htu compared without query and fragment, after normalization (scheme and host case, default port).
    expect((await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htu: `${ISSUER}/oauth2/token?x=1#f` }) })).statusCode).toBe(200)
    expect((await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htu: 'HTTPS://IDP.example.com:443/oauth2/token' }) })).statusCode).toBe(200)
  })

  it('refuses a proof that is not a dpop+jwt signed asymmetrically by the public key it carries, or too old', async () => {
    const app = await context.build({ ISSUER })
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const other = await dpopKey()
    const now = Math.floor(Date.now() / 1000)
    const refusals: Array<[string, string | string[], RegExp]> = [
      ['typ JWT', await proof(key, { typ: 'JWT' }), /typ must be dpop\+jwt/],
      ['a jwk that did not sign it', await proof(key, { jwk: other.jwk }), /signature/],
      ['a private jwk', await proof(key, { jwk: await exportJWK(key.privateKey) }), /public key/],
      ['no jti', await proof(key, { omit: ['jti'] }), /jti/],
      ['no htu', await proof(key, { omit: ['htu'] }), /htu/],
      ['no iat', await proof(key, { omit: ['iat'] }), /iat/],
      ['an iat 10 minutes old', await proof(key, { iat: now - 600 }), /iat must be within/],
      ['an iat 10 minutes ahead', await proof(key, { iat: now + 600 }), /iat must be within/],
      ['not a JWT', 'not-a-jwt', /one JWT/],
      ['two DPoP headers', [await proof(key), await proof(key)], /exactly one DPoP header/]
    ]
    const hmac = new SignJWT({ jti: randomUUID(), htm: 'POST', htu: `${ISSUER}/oauth2/token`, iat: now }).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'c2VjcmV0' } as JWK as never })
    refusals.push(['HS256', await hmac.sign(new TextEncoder().encode('secret')), /alg must be one of/])
    const [head, body] = (await proof(key)).split('.')
    refusals.push(['alg none', `${head}.${body}.`, /must be signed/])
    for (const [what, dpop, detail] of refusals) {
      const response = await tokenRequest(app, clientId, secret, { dpop })
      expect(response.statusCode, what).toBe(400)
      expect(response.json().error, what).toBe('invalid_dpop_proof')
      expect(response.json().error_description, what).toMatch(detail)
    }
    // An RSA key under 2048 bits is refused too (jose's key length check). jose will not sign with one: node:crypto does.
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
    const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
    const input = `${part({ alg: 'RS256', typ: 'dpop+jwt', jwk: small.publicKey.export({ format: 'jwk' }) })}.${part({ jti: randomUUID(), htm: 'POST', htu: `${ISSUER}/oauth2/token`, iat: now })}`
    const smallProof = `${input}.${sign('sha256', Buffer.from(input), small.privateKey).toString('base64url')}`
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: smallProof }), /public key of an accepted type|2048/)
  })

  it('dpop_bound_access_tokens: set on create and patch; a proof is then required, and turning it on kills earlier tokens', async () => {
    const app = await context.build({ ISSUER })
    const required = await agentWithSecret(app, { dpop_bound_access_tokens: true })
    expect(required.agent.dpop_bound_access_tokens).toBe(true)
    expectInvalidProof(await tokenRequest(app, required.clientId, required.secret), /must send a DPoP proof/)
    expect((await tokenRequest(app, required.clientId, required.secret, { dpop: await proof(await dpopKey()) })).json().token_type).toBe('DPoP')

    const later = await agentWithSecret(app)
    expect(later.agent.dpop_bound_access_tokens).toBe(false)
    const bearer = (await tokenRequest(app, later.clientId, later.secret)).json().access_token as string
    const read = async () => await app.inject({ method: 'GET', url: `/api/v1/agents/${later.agent.id}`, headers: { authorization: `Bearer ${bearer}` } })
    expect((await read()).statusCode).toBe(200)
    const patched = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${later.agent.id}`, headers: await authHeaders(app), payload: { dpop_bound_access_tokens: true } })
    expect(patched.statusCode, patched.body).toBe(200)
    expect(patched.json().dpop_bound_access_tokens).toBe(true)
    // The client's verification was cached by the token request above: the change is seen at once all the same.
    expectInvalidProof(await tokenRequest(app, later.clientId, later.secret))
    expect((await read()).statusCode).toBe(401)
    const [updated] = await auditEvents(app, 'agent.updated')
    expect(updated?.data).toMatchObject({ fields: ['dpop_bound_access_tokens'], dpop_bound_access_tokens: { from: false, to: true } })

    const off = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${later.agent.id}`, headers: await authHeaders(app), payload: { dpop_bound_access_tokens: false } })
    expect(off.json().dpop_bound_access_tokens).toBe(false)
    expect((await app.inject({ method: 'PATCH', url: `/api/v1/agents/${later.agent.id}`, headers: await authHeaders(app), payload: { dpop_bound_access_tokens: 'yes' } })).statusCode).toBe(400)
  })

  it('under an organization\'s issuer, htu is that issuer\'s token endpoint', async () => {
    const app = await context.build({ ISSUER })
    const pems = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
    const keys = await loadSigningKeys({ privateKey: pems.privateKey, publicKey: pems.publicKey, previous: [] })
    const acme = issuerContextOf({ orgId: DEFAULT_ORG_ID, origin: ISSUER, basePath: '/o/acme', keys, tokenAudience: `${ISSUER}/o/acme` })
    app.issuerFor = async (request: FastifyRequest) => (request.headers['x-test-issuer'] === 'acme' ? acme : app.defaultIssuer)
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: await proof(key), 'x-test-issuer': 'acme' }), /htu must be https:\/\/idp\.example\.com\/o\/acme\/oauth2\/token/)
    const issued = await tokenRequest(app, clientId, secret, { dpop: await proof(key, { htu: `${ISSUER}/o/acme/oauth2/token` }), 'x-test-issuer': 'acme' })
    expect(issued.statusCode, issued.body).toBe(200)
    expect(claimsOf(issued.json().access_token)).toMatchObject({ iss: `${ISSUER}/o/acme`, cnf: { jkt: key.jkt } })
  })
})

describe('the management API, a resource server of this issuer', () => {
  it('takes Authorization: DPoP with a proof of this request; refuses a replayed proof and a wrong htu, htm, ath or key', async () => {
    const app = await context.build({ ISSUER })
    const { agent, clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const token = await boundToken(app, clientId, secret, key)
    expect((await managementCall(app, agent.id, token, key)).statusCode).toBe(200)
    // The scheme is case-insensitive (RFC 9110 §11.1).
    expect((await managementCall(app, agent.id, token, key, {}, 'dpop')).statusCode).toBe(200)

    const refused = async (response: Awaited<ReturnType<typeof managementCall>>, error: string, detail: RegExp) => {
      expect(response.statusCode, response.body).toBe(401)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(response.headers['www-authenticate']).toMatch(new RegExp(`^DPoP realm="agentidp", error="${error}", error_description="[^"]+", algs="ES256 ES384 Ed25519 EdDSA PS256 RS256"$`))
      expect(response.json().detail).toMatch(detail)
    }
    const url = `/api/v1/agents/${agent.id}`
    const dpop = await proof(key, { htm: 'GET', htu: `${ISSUER}${url}`, ath: accessTokenHash(token) })
    const send = async (headers: Record<string, string>) => await app.inject({ method: 'GET', url, headers: { authorization: `DPoP ${token}`, ...headers } })
    expect((await send({ dpop })).statusCode).toBe(200)
    await refused(await send({ dpop }), 'invalid_dpop_proof', /used before/)
    await refused(await managementCall(app, agent.id, token, key, { htu: `${ISSUER}/api/v1/agents` }), 'invalid_dpop_proof', /htu/)
    await refused(await managementCall(app, agent.id, token, key, { htu: `http://localhost${url}` }), 'invalid_dpop_proof', /htu/)
    await refused(await managementCall(app, agent.id, token, key, { htm: 'POST' }), 'invalid_dpop_proof', /htm must be GET/)
    await refused(await managementCall(app, agent.id, token, key, { ath: accessTokenHash(`${token}x`) }), 'invalid_dpop_proof', /ath/)
    await refused(await send({ dpop: await proof(key, { htm: 'GET', htu: `${ISSUER}${url}` }) }), 'invalid_dpop_proof', /ath/)
    await refused(await managementCall(app, agent.id, token, await dpopKey()), 'invalid_dpop_proof', /another key/)
    await refused(await send({}), 'invalid_dpop_proof', /proof \(the DPoP header\) is required/)
    // A Bearer token presented under the DPoP scheme is no DPoP token.
    const plain = (await tokenRequest(app, clientId, secret)).json().access_token as string
    await refused(await managementCall(app, agent.id, plain, key), 'invalid_token', /not bound to a DPoP key/)
    const failures = await auditEvents(app, 'auth.failed')
    expect(failures.map((event) => event.data.reason)).toContain('the DPoP proof was used before: make a new proof (a new jti) for each request')
  })

  it('refuses a DPoP-bound token presented as Bearer; offers both schemes to a request without a token', async () => {
    const app = await context.build({ ISSUER })
    const { agent, clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const token = await boundToken(app, clientId, secret, key)
    const asBearer = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: { authorization: `Bearer ${token}` } })
    expect(asBearer.statusCode).toBe(401)
    expect(asBearer.headers['www-authenticate']).toMatch(/^DPoP realm="agentidp", error="invalid_token", .*algs="/)
    expect(asBearer.json().detail).toMatch(/bound to a DPoP key/)
    // Even with a valid proof beside it: the scheme says Bearer.
    const withProof = await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: { authorization: `Bearer ${token}`, dpop: await proof(key, { htm: 'GET', htu: `${ISSUER}/api/v1/agents/${agent.id}`, ath: accessTokenHash(token) }) } })
    expect(withProof.statusCode).toBe(401)

    const anonymous = await app.inject({ method: 'GET', url: '/api/v1/agents' })
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.headers['www-authenticate']).toBe('Bearer realm="agentidp", DPoP realm="agentidp", algs="ES256 ES384 Ed25519 EdDSA PS256 RS256"')
    // A Bearer token that is not bound keeps the Bearer challenge.
    const expired = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Bearer not.a.token' } })
    expect(expired.headers['www-authenticate']).toMatch(/^Bearer realm="agentidp", error="invalid_token"/)
    // 403 for a missing scope names the scheme the token came with.
    const forbidden = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { authorization: `DPoP ${token}`, dpop: await proof(key, { htm: 'POST', htu: `${ISSUER}/api/v1/agents`, ath: accessTokenHash(token) }) }, payload: { name: 'x' } })
    expect(forbidden.statusCode).toBe(403)
    expect(forbidden.headers['www-authenticate']).toMatch(/^DPoP realm="agentidp", error="insufficient_scope"/)
  })
})

describe('introspection and revocation', () => {
  it('introspection shows cnf and token_type DPoP; revoke takes a DPoP-bound token and the token is dead', async () => {
    const app = await context.build({ ISSUER })
    const { agent, clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    const token = await boundToken(app, clientId, secret, key)
    const introspected = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(clientId, secret) })
    expect(introspected.statusCode, introspected.body).toBe(200)
    expect(introspected.json()).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } })
    const plain = (await tokenRequest(app, clientId, secret)).json().access_token as string
    const plainIntrospected = (await postForm(app, '/oauth2/introspect', { token: plain }, { authorization: basicAuth(clientId, secret) })).json()
    expect(plainIntrospected.token_type).toBe('Bearer')
    expect(plainIntrospected.cnf).toBeUndefined()

    expect((await postForm(app, '/oauth2/revoke', { token }, { authorization: basicAuth(clientId, secret) })).statusCode).toBe(200)
    expect((await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(clientId, secret) })).json()).toEqual({ active: false })
    const call = await managementCall(app, agent.id, token, key)
    expect(call.statusCode).toBe(401)
    expect(call.json().detail).toBe('the access token has been revoked')
  })
})

describe('DPOP_NONCE', () => {
  it('is optional by default, or required; anything else stops the start naming the variable', () => {
    expect(context.config().dpopNonce).toBe('optional')
    expect(context.config({ DPOP_NONCE: 'required' }).dpopNonce).toBe('required')
    expect(() => context.config({ DPOP_NONCE: 'yes' })).toThrow('DPOP_NONCE must be optional or required, got "yes"')
  })
})

describe('the store of spent proofs', () => {
  it('setIfAbsent: one caller sets a key, until it expires', async () => {
    const app = await context.build()
    const key = `dpop:test:${randomUUID()}`
    const first = await Promise.all([app.store.setIfAbsent(key, '1', 200), app.store.setIfAbsent(key, '1', 200)])
    expect(first.sort()).toEqual([false, true])
    await expect.poll(async () => await app.store.setIfAbsent(key, '1', 60_000), { timeout: 5000, interval: 50 }).toBe(true)
  })
})

describe.skipIf(!hasRedisServer)('replicas and a Redis that goes away (a redis-server of the test\'s own)', () => {
  let redis: OwnRedisServer
  beforeAll(async () => { redis = await OwnRedisServer.start() })
  afterAll(async () => { await redis.stop() })

  it('a proof is spent on every replica at once under dpop:{jkt}:…, and one replica\'s nonce is good at the other', async (test) => {
    context.requireServerDatabase(test)
    const one = await context.build({ ISSUER, REDIS_URL: redis.url, DPOP_NONCE: 'required' })
    const other = await context.build({ ISSUER, REDIS_URL: redis.url, DPOP_NONCE: 'required' })
    const { clientId, secret } = await agentWithSecret(one)
    const key = await dpopKey()
    const nonce = (await tokenRequest(one, clientId, secret, { dpop: await proof(key) })).headers['dpop-nonce'] as string
    expect(nonce).toBeDefined()
    const spent = await proof(key, { nonce })
    expect((await tokenRequest(other, clientId, secret, { dpop: spent })).statusCode).toBe(200)
    expectInvalidProof(await tokenRequest(one, clientId, secret, { dpop: spent }), /used before/)
    const client = createClient({ url: redis.url })
    await client.connect()
    try {
      const keys = await client.keys(`dpop:${key.jkt}:*`)
      expect(keys).toHaveLength(1)
      const ttl = await client.pTTL(keys[0] as string)
      expect(ttl).toBeGreaterThan(300_000)
      expect(ttl).toBeLessThanOrEqual(365_000)
    } finally {
      await client.close()
    }
  })

  it('Redis down: proofs are still single use at this replica, with a warning; tokens are still issued', async () => {
    const logs = new LogCapture()
    const app = await context.build({ ISSUER, REDIS_URL: redis.url }, { logs })
    const { clientId, secret } = await agentWithSecret(app)
    const key = await dpopKey()
    await redis.stop()
    try {
      const once = await proof(key)
      const first = await tokenRequest(app, clientId, secret, { dpop: once })
      expect(first.statusCode, first.body).toBe(200)
      expect(first.json().token_type).toBe('DPoP')
      expectInvalidProof(await tokenRequest(app, clientId, secret, { dpop: once }), /used before/)
      expect(logs.text).toContain('DPoP proof jtis are checked in this process only: store unavailable')
    } finally {
      await redis.start()
    }
  })
})
