import { globalAgent } from 'node:https'
import { createServer, type AddressInfo } from 'node:net'
import { Resolver } from 'did-resolver'
import { CompactSign, compactVerify, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose'
import { getResolver } from 'web-did-resolver'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildApp, type App } from '../../src/app.js'
import { setupTestContext } from '../helper.js'
import { authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, postForm } from '../support/oauth.js'
import { localhostCertificate, type LocalhostCertificate } from '../support/tls.js'

const context = setupTestContext()
const resolver = new Resolver(getResolver())

// web-did-resolver fetches https://{host}/… with the process's https agent and no option to change it: the test
// serves AgentIdP itself over TLS with a certificate for localhost that this process (only) is told to trust.
let tls: LocalhostCertificate
let trustedBefore: unknown
beforeAll(() => {
  tls = localhostCertificate()
  trustedBefore = globalAgent.options.ca
  globalAgent.options.ca = tls.cert
})
afterAll(() => {
  globalAgent.options.ca = trustedBefore as string | undefined
  tls.remove()
})

const listening: App[] = []
afterEach(async () => { await Promise.all(listening.splice(0).map((app) => app.close())) })

/** AgentIdP over https at https://localhost:{port}, its issuer, as did:web resolves it. */
async function httpsApp (): Promise<{ app: App, port: number }> {
  const port = await freePort()
  const app = await buildApp(context.config({ ISSUER: `https://localhost:${port}`, PORT: String(port) }), { https: { key: tls.key, cert: tls.cert } } as never)
  listening.push(app)
  // localhost: wherever the resolver's lookup of localhost lands (127.0.0.1 or ::1), AgentIdP is there.
  await app.listen({ port, host: 'localhost' })
  return { app, port }
}

async function registerKey (app: App, agentId: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const jwk = await exportJWK(publicKey)
  const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agentId}/credentials`, headers: await authHeaders(app), payload: { type: 'private_key_jwt', jwk } })
  expect(response.statusCode, response.body).toBe(201)
  return { privateKey, jwk, credential: response.json() }
}

describe('DIDs (did:web)', () => {
  it('resolves an agent\'s DID with did-resolver and web-did-resolver to its live keys, and its signature verifies against them', async () => {
    const { app, port } = await httpsApp()
    const agent = await createAgent(app, { name: 'signer' })
    const did = `did:web:localhost%3A${port}:agents:${agent.id}`
    expect(agent.did).toBe(did)
    expect((await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })).json().did).toBe(did)
    const first = await registerKey(app, agent.id)
    const second = await registerKey(app, agent.id)
    await createCredential(app, agent.id) // a secret: never in the document
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${first.credential.id}`, headers: await authHeaders(app) })

    const resolved = await resolver.resolve(did)
    expect(resolved.didResolutionMetadata.error, resolved.didResolutionMetadata.message).toBeUndefined()
    const document = resolved.didDocument
    expect(document).toMatchObject({
      '@context': expect.arrayContaining(['https://www.w3.org/ns/did/v1']),
      id: did,
      controller: `did:web:localhost%3A${port}`
    })
    const methodId = `${did}#${second.credential.jwk_thumbprint as string}`
    expect(document?.verificationMethod).toEqual([{ id: methodId, type: 'JsonWebKey2020', controller: did, publicKeyJwk: second.jwk }])
    expect(document?.authentication).toEqual([methodId])
    expect(document?.assertionMethod).toEqual([methodId])

    // A statement the agent signs verifies with the key its DID resolves to; the revoked key's does not verify.
    const method = (await resolver.resolve(did)).didDocument?.verificationMethod?.[0]
    const resolvedKey = await importJWK(method?.publicKeyJwk as JWK, 'ES256')
    const statement = new TextEncoder().encode('I, the agent, approve order 42')
    const signed = await new CompactSign(statement).setProtectedHeader({ alg: 'ES256', kid: methodId }).sign(second.privateKey)
    expect(new TextDecoder().decode((await compactVerify(signed, resolvedKey)).payload)).toBe('I, the agent, approve order 42')
    const byRevoked = await new CompactSign(statement).setProtectedHeader({ alg: 'ES256' }).sign(first.privateKey)
    await expect(compactVerify(byRevoked, resolvedKey)).rejects.toThrow()

    const raw = await app.inject({ method: 'GET', url: `/agents/${agent.id}/did.json` })
    expect(raw.headers['content-type']).toMatch(/^application\/did\+json/)
  })

  it('resolves the issuer\'s DID to its signing keys, which verify its access tokens', async () => {
    const { app, port } = await httpsApp()
    const resolved = await resolver.resolve(`did:web:localhost%3A${port}`)
    expect(resolved.didResolutionMetadata.error, resolved.didResolutionMetadata.message).toBeUndefined()
    const document = resolved.didDocument
    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    expect(document?.verificationMethod?.map((method) => method.publicKeyJwk)).toEqual(jwks.keys)
    expect(document?.assertionMethod).toEqual(jwks.keys.map((key: JWK) => `did:web:localhost%3A${port}#${key.kid as string}`))

    const agent = await createAgent(app, { name: 'token holder', scopes: ['a:b'] })
    const secret = (await createCredential(app, agent.id)).client_secret as string
    const token = (await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(agent.client_id, secret) })).json().access_token as string
    const key = document?.verificationMethod?.[0]?.publicKeyJwk as JWK
    const { payload } = await jwtVerify(token, await importJWK(key, key.alg), { issuer: `https://localhost:${port}` })
    expect(payload.sub).toBe(agent.id)
  })

  it('shows a suspended agent with no verification methods, and answers 410 for a decommissioned one', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'paused' })
    await registerKey(app, agent.id)
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'suspended' } })
    const suspended = await app.inject({ method: 'GET', url: `/agents/${agent.id}/did.json` })
    expect(suspended.statusCode).toBe(200)
    expect(suspended.json()).toMatchObject({ id: agent.did, verificationMethod: [], authentication: [], assertionMethod: [] })
    await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status: 'active' } })
    expect((await app.inject({ method: 'GET', url: `/agents/${agent.id}/did.json` })).json().verificationMethod).toHaveLength(1)

    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })
    const retired = await app.inject({ method: 'GET', url: `/agents/${agent.id}/did.json` })
    expect(retired.statusCode).toBe(410)
    expect(retired.json().type).toBe('urn:agentidp:problem:gone')
    expect((await app.inject({ method: 'GET', url: '/agents/0190a4b2-7c1e-7000-8000-000000000000/did.json' })).statusCode).toBe(404)
    expect((await app.inject({ method: 'GET', url: '/agents/not-an-id/did.json' })).statusCode).toBe(400)
  })

  it('derives every DID from the issuer: a port as %3A, an issuer path as more segments, served at {path}/did.json', async () => {
    const app = await context.build({ ISSUER: 'https://idp.example.com/o/acme' })
    const agent = await createAgent(app, { name: 'tenant agent' })
    expect(agent.did).toBe(`did:web:idp.example.com:o:acme:agents:${agent.id}`)
    expect((await app.inject({ method: 'GET', url: '/.well-known/did.json' })).statusCode).toBe(404)
    const document = await app.inject({ method: 'GET', url: '/did.json' })
    expect(document.statusCode).toBe(200)
    expect(document.json().id).toBe('did:web:idp.example.com:o:acme')
    expect((await app.inject({ method: 'GET', url: `/agents/${agent.id}/did.json` })).json()).toMatchObject({ id: agent.did, controller: 'did:web:idp.example.com:o:acme' })

    const plain = await context.build({ ISSUER: 'https://idp.example.com' })
    expect((await plain.inject({ method: 'GET', url: '/did.json' })).statusCode).toBe(404)
    expect((await plain.inject({ method: 'GET', url: '/.well-known/did.json' })).json().id).toBe('did:web:idp.example.com')
  })
})

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
