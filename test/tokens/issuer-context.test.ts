import { generateKeyPairSync } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { loadSigningKeys } from '../../plugins/infra/keys.js'
import { issuerContextOf, type IssuerContext } from '../../plugins/tokens/issuer-context.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { setupTestContext } from '../helper.js'
import { createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, headerOf, postForm } from '../support/oauth.js'

const context = setupTestContext()

/** An ES256 issuer under the app's ISSUER, as an organization's will be: its own path, its own key. */
async function organizationIssuer (app: App, slug: string): Promise<IssuerContext> {
  const pems = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const keys = await loadSigningKeys({ privateKey: pems.privateKey, publicKey: pems.publicKey, previous: [] })
  const basePath = `/o/${slug}`
  return issuerContextOf({ orgId: DEFAULT_ORG_ID, origin: app.config.issuer, basePath, keys, tokenAudience: `${app.config.issuer}${basePath}` })
}

/**
 * Resolves requests that carry `x-test-issuer` to the issuer of that name, through the one seam organizations will
 * use (a header stands in for the `/o/{slug}` prefix, whose routes do not exist yet).
 */
function resolveBy (app: App, issuers: Record<string, IssuerContext>): void {
  const fallback = app.defaultIssuer
  app.issuerFor = async (request: FastifyRequest) => {
    const name = request.headers['x-test-issuer']
    return typeof name === 'string' && Object.hasOwn(issuers, name) ? issuers[name] as IssuerContext : fallback
  }
}

async function agentWithCredential (app: App) {
  const agent = await createAgent(app, { name: 'issuer context agent', scopes: ['agents:read'] })
  const credential = await createCredential(app, agent.id)
  return { clientId: credential.client_id as string, secret: credential.client_secret as string }
}

describe('the issuer context is the single source of the issuer and its keys', () => {
  it('by default: ISSUER, the configured keys and TOKEN_AUDIENCE', async () => {
    const app = await context.build({ ISSUER: 'https://idp.example.com/agents', TOKEN_AUDIENCE: 'https://api.example.com' })
    expect(app.defaultIssuer).toMatchObject({ issuer: 'https://idp.example.com/agents', basePath: '', tokenAudience: 'https://api.example.com' })
    expect(app.defaultIssuer.keys).toBe(app.keys)
    expect(app.defaultIssuer.url('/oauth2/token')).toBe('https://idp.example.com/agents/oauth2/token')
    expect(Object.isFrozen(app.defaultIssuer)).toBe(true)
  })

  it('discovery, JWKS, the tokens issued and the tokens accepted all follow the issuer a request resolves to', async () => {
    const app = await context.build()
    const acme = await organizationIssuer(app, 'acme')
    resolveBy(app, { acme })
    const { clientId, secret } = await agentWithCredential(app)
    const asAcme = { 'x-test-issuer': 'acme' }

    const metadata = (await app.inject({ method: 'GET', url: '/.well-known/openid-configuration', headers: asAcme })).json()
    expect(metadata).toMatchObject({
      issuer: acme.issuer,
      token_endpoint: `${app.config.issuer}/o/acme/oauth2/token`,
      jwks_uri: `${app.config.issuer}/o/acme/.well-known/jwks.json`,
      introspection_endpoint: `${app.config.issuer}/o/acme/oauth2/introspect`,
      service_documentation: `${app.config.issuer}/o/acme/docs`,
      id_token_signing_alg_values_supported: ['ES256']
    })
    // Built per issuer, not once: the default's metadata is still its own.
    const defaults = (await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json()
    expect(defaults).toMatchObject({ issuer: app.config.issuer, token_endpoint: `${app.config.issuer}/oauth2/token`, id_token_signing_alg_values_supported: ['RS256'] })

    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: asAcme })).json()
    expect(jwks).toEqual(acme.keys.jwks)
    expect((await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()).toEqual(app.keys.jwks)

    const issued = await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret), ...asAcme })
    expect(issued.statusCode, issued.body).toBe(200)
    const token = issued.json().access_token as string
    expect(headerOf(token)).toEqual({ alg: 'ES256', typ: 'at+jwt', kid: acme.keys.current.kid })
    expect(claimsOf(token)).toMatchObject({ iss: acme.issuer, aud: acme.tokenAudience })
    await jwtVerify(token, createLocalJWKSet(jwks), { issuer: acme.issuer })

    const agents = (headers: Record<string, string>) => app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}`, ...headers } })
    expect((await agents(asAcme)).statusCode).toBe(200)
    // The default issuer neither holds acme's key nor takes its tokens.
    const refused = await agents({})
    expect(refused.statusCode).toBe(401)
    expect(refused.json().detail).toBe('the access token is invalid')

    const introspect = (headers: Record<string, string>) => postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(clientId, secret), ...headers })
    expect((await introspect(asAcme)).json()).toMatchObject({ active: true, iss: acme.issuer })
    expect((await introspect({})).json()).toEqual({ active: false })
  })

  it('a token verified for one issuer is never taken from the cache for another, even under the same keys', async () => {
    const app = await context.build()
    const other = issuerContextOf({ orgId: DEFAULT_ORG_ID, origin: 'https://other.example', basePath: '', keys: app.keys, tokenAudience: 'https://other.example' })
    resolveBy(app, { other })
    const { clientId, secret } = await agentWithCredential(app)
    const issued = await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, secret) })
    const token = issued.json().access_token as string
    const introspect = (headers: Record<string, string>) => postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(clientId, secret), ...headers })
    // Verified (and cached) for the default issuer first, then presented to the other one.
    expect((await introspect({})).json()).toMatchObject({ active: true, iss: app.config.issuer })
    expect((await introspect({ 'x-test-issuer': 'other' })).json()).toEqual({ active: false })
    await expect(app.verifyAccessToken(token, other)).rejects.toThrow(/iss/)

    const management = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}`, 'x-test-issuer': 'other' } })
    expect(management.statusCode).toBe(401)
    expect(management.json().detail).toBe(`the access token was issued by ${app.config.issuer}, not by this server (ISSUER is https://other.example)`)
  })
})
