import { generateKeyPairSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { setupTestContext } from '../helper.js'
import { authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth, headerOf, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

const pair = () => generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
const escaped = (pem: string): string => pem.trim().replace(/\n/g, '\\n')

describe('two replicas on one PostgreSQL and Redis', () => {
  it('revocation, suspension and credential revocation through one are honoured by the other on the very next request', async (test) => {
    context.requireServerDatabase(test)
    const [first, second] = [await context.build(), await context.build()] as [App, App]
    const agent = await createAgent(first, { name: 'replicated', scopes: ['agents:read'] })
    const [one, two] = [await createCredential(first, agent.id), await createCredential(first, agent.id)]
    const use = async (app: App, token: string) => (await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers: { authorization: `Bearer ${token}` } })).statusCode

    const revoked = (await requestToken(first, one.client_id, one.client_secret)).json().access_token
    expect(await use(second, revoked)).toBe(200)
    await postForm(first, '/oauth2/revoke', { token: revoked }, { authorization: basicAuth(one.client_id, one.client_secret) })
    expect(await use(second, revoked)).toBe(401)

    const ofOne = (await requestToken(second, one.client_id, one.client_secret)).json().access_token
    const ofTwo = (await requestToken(second, two.client_id, two.client_secret)).json().access_token
    await first.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${one.id}`, headers: await authHeaders(first) })
    expect(await use(second, ofOne)).toBe(401)
    expect(await use(second, ofTwo)).toBe(200)
    expect((await requestToken(second, one.client_id, one.client_secret)).statusCode).toBe(401)

    await first.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(first), payload: { status: 'suspended' } })
    expect(await use(second, ofTwo)).toBe(401)
    expect((await requestToken(second, two.client_id, two.client_secret)).statusCode).toBe(401)
  })

  it('key rotation: each replica restarted with the new key and JWT_PREVIOUS_PUBLIC_KEYS accepts tokens of either key', async (test) => {
    context.requireServerDatabase(test)
    const [oldKey, newKey] = [pair(), pair()]
    const before = { JWT_PRIVATE_KEY: escaped(oldKey.privateKey), JWT_PUBLIC_KEY: escaped(oldKey.publicKey) }
    const after = { JWT_PRIVATE_KEY: escaped(newKey.privateKey), JWT_PUBLIC_KEY: escaped(newKey.publicKey), JWT_PREVIOUS_PUBLIC_KEYS: escaped(oldKey.publicKey) }
    const setup = await context.build(before)
    const agent = await createAgent(setup, { name: 'rotating', scopes: ['agents:read'] })
    const credential = await createCredential(setup, agent.id)
    const oldToken = (await requestToken(setup, credential.client_id, credential.client_secret)).json().access_token
    await setup.close()

    // A rolling restart: one replica on the new key while the other still runs the old one, then both on the new.
    const rolled = await context.build(after)
    const stillOld = await context.build(before)
    const newToken = (await requestToken(rolled, credential.client_id, credential.client_secret)).json().access_token
    expect(headerOf(newToken).kid).not.toBe(headerOf(oldToken).kid)
    const use = async (app: App, token: string) => (await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers: { authorization: `Bearer ${token}` } })).statusCode
    expect(await use(rolled, oldToken)).toBe(200)
    expect(await use(rolled, newToken)).toBe(200)
    expect(await use(stillOld, oldToken)).toBe(200)
    await stillOld.close()
    const both = await context.build(after)
    for (const app of [rolled, both]) {
      expect(await use(app, oldToken)).toBe(200)
      expect(await use(app, newToken)).toBe(200)
      const introspection = await postForm(app, '/oauth2/introspect', { token: oldToken }, { authorization: basicAuth(credential.client_id, credential.client_secret) })
      expect(introspection.json().active).toBe(true)
      const { keys } = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
      expect(keys.map((key: { kid: string }) => key.kid).sort()).toEqual([headerOf(oldToken).kid, headerOf(newToken).kid].sort())
    }
  })
})
