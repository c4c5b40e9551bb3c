import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, createRemoteJWKSet, exportJWK, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { loadSigningKeys } from '../../plugins/infra/keys.js'
import type { App } from '../../src/app.js'
import { ConfigError } from '../../src/config.js'
import { generateSigningKeyPair, SIGNING_KEY_TYPES, type PemKeyPair, type SigningKeyType } from '../../src/embedded.js'
import { setupTestContext } from '../helper.js'
import { auditEvents, createAgent, createCredential } from '../support/management.js'
import { basicAuth, headerOf, postForm, requestToken } from '../support/oauth.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()
const TYPES = Object.entries(SIGNING_KEY_TYPES) as Array<[SigningKeyType, typeof SIGNING_KEY_TYPES[SigningKeyType]]>

/** The app's environment for a signing pair, and previous public keys (PEM with real newlines, as a file holds them). */
const keyEnv = (pair: PemKeyPair, previous: string[] = []): Record<string, string> => ({
  JWT_PRIVATE_KEY: pair.privateKey,
  JWT_PUBLIC_KEY: pair.publicKey,
  ...(previous.length === 0 ? {} : { JWT_PREVIOUS_PUBLIC_KEYS: previous.join('\n') })
})

/** A client whose tokens may call the management API and introspect. */
async function adminClient (app: App) {
  const agent = await createAgent(app, { name: 'signing test agent', scopes: ['agents:read', 'tokens:introspect'] })
  const credential = await createCredential(app, agent.id)
  return { agent, clientId: credential.client_id as string, secret: credential.client_secret as string }
}

/** What a standard resource server and this server's own endpoints make of a token. */
async function useEverywhere (app: App, client: { clientId: string, secret: string }, token: string, algorithms: string[]) {
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const discovery = await (await fetch(`${address}/.well-known/openid-configuration`)).json() as { jwks_uri: string, issuer: string, id_token_signing_alg_values_supported: string[] }
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri.replace(app.config.issuer, address)))
  const verified = await jwtVerify(token, jwks, { issuer: discovery.issuer, audience: app.config.issuer, typ: 'at+jwt', algorithms })
  const introspection = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(client.clientId, client.secret) })
  const management = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })
  return { discovery, verified, introspection, management }
}

describe('signing algorithms: the algorithm follows JWT_PRIVATE_KEY', () => {
  it.each(TYPES)('%s key: tokens are %s, verify through discovery and JWKS, are active at introspection and accepted by the management API', async (type, alg) => {
    const app = await context.build(keyEnv(generateSigningKeyPair(type)))
    const client = await adminClient(app)
    const response = await requestToken(app, client.clientId, client.secret)
    expect(response.statusCode, response.body).toBe(200)
    const token = response.json().access_token as string
    expect(headerOf(token)).toEqual({ alg, typ: 'at+jwt', kid: app.keys.current.kid })

    const { discovery, verified, introspection, management } = await useEverywhere(app, client, token, [alg])
    expect(discovery.id_token_signing_alg_values_supported).toEqual([alg])
    expect(verified.payload.sub).toBe(client.agent.id)
    expect(introspection.statusCode, introspection.body).toBe(200)
    expect(introspection.json()).toMatchObject({ active: true, sub: client.agent.id, client_id: client.clientId })
    expect(management.statusCode, management.body).toBe(200)

    const { keys } = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    expect(keys).toEqual([expect.objectContaining({ kid: app.keys.current.kid, use: 'sig', alg })])
    expect(keys[0].d).toBeUndefined()
    expect(keys[0].kid).toBe(await calculateJwkThumbprint(keys[0]))
    // The file's database is shared by its tests: the last key.current is this app's.
    expect((await auditEvents(app, 'key.current')).at(-1)?.data).toMatchObject({ kid: app.keys.current.kid, alg })
  })

  it('ES256 signatures are the raw 64-byte r||s of RFC 7518 §3.4, not DER', async () => {
    const app = await context.build(keyEnv(generateSigningKeyPair('ec')))
    const client = await adminClient(app)
    const token = (await requestToken(app, client.clientId, client.secret)).json().access_token as string
    expect(Buffer.from(token.split('.')[2] as string, 'base64url')).toHaveLength(64)
  })
})

describe('mixed key sets: migrating from RSA to EC', () => {
  const rsa = generateSigningKeyPair('rsa')
  const ec = generateSigningKeyPair('ec')

  it('with the EC key current and the RSA key previous, both are published, discovery lists both algorithms, and tokens of either work', async () => {
    const app = await context.build(keyEnv(ec, [rsa.publicKey]))
    const rsaKid = await calculateJwkThumbprint(await exportJWK(createPrivateKey(rsa.privateKey)))
    const { keys } = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    expect(keys.map((key: { kty: string, alg: string, kid: string }) => [key.kty, key.alg, key.kid])).toEqual([['EC', 'ES256', app.keys.current.kid], ['RSA', 'RS256', rsaKid]])

    const client = await adminClient(app)
    const fresh = (await requestToken(app, client.clientId, client.secret)).json().access_token as string
    expect(headerOf(fresh).alg).toBe('ES256')
    // A token the RSA key signed before the rotation, for this client.
    const old = await mintAccessToken(app, { sub: client.agent.id, clientId: client.clientId, scopes: ['agents:read'], key: createPrivateKey(rsa.privateKey), header: { alg: 'RS256', kid: rsaKid } })
    const used = await useEverywhere(app, client, old, ['ES256', 'RS256'])
    expect(used.discovery.id_token_signing_alg_values_supported).toEqual(['ES256', 'RS256'])
    expect(used.verified.protectedHeader).toMatchObject({ alg: 'RS256', kid: rsaKid })
    expect(used.introspection.json()).toMatchObject({ active: true })
    expect(used.management.statusCode, used.management.body).toBe(200)
    expect((await postForm(app, '/oauth2/introspect', { token: fresh }, { authorization: basicAuth(client.clientId, client.secret) })).json()).toMatchObject({ active: true })

    expect((await auditEvents(app, 'key.previous_published')).map((event) => event.data)).toContainEqual(expect.objectContaining({ kid: rsaKid, alg: 'RS256' }))
  })

  it('each key verifies only under its own algorithm: a token naming the other key\'s kid is refused', async () => {
    const app = await context.build(keyEnv(ec, [rsa.publicKey]))
    const rsaKid = await calculateJwkThumbprint(await exportJWK(createPrivateKey(rsa.privateKey)))
    const client = await adminClient(app)
    const refused = [
      // Signed by the RSA key, under the EC key's kid.
      await mintAccessToken(app, { key: createPrivateKey(rsa.privateKey), header: { alg: 'RS256', kid: app.keys.current.kid } }),
      // Signed by the EC key, under the RSA key's kid.
      await mintAccessToken(app, { header: { alg: 'ES256', kid: rsaKid } })
    ]
    for (const token of refused) {
      const management = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })
      expect(management.statusCode, management.body).toBe(401)
      expect(management.headers['www-authenticate']).toContain('error="invalid_token"')
      const introspection = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(client.clientId, client.secret) })
      expect(introspection.json()).toEqual({ active: false })
    }
  })
})

describe('keys this server does not sign with', () => {
  const pem = (pair: { privateKey: KeyObject, publicKey: KeyObject }): PemKeyPair => ({
    privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string
  })
  const unsupported: Array<[string, PemKeyPair, string]> = [
    ['RSA-1024', pem(generateKeyPairSync('rsa', { modulusLength: 1024 })), 'got an RSA key of 1024 bits'],
    ['EC P-384', pem(generateKeyPairSync('ec', { namedCurve: 'P-384' })), 'got an EC key on secp384r1'],
    ['EC secp256k1', pem(generateKeyPairSync('ec', { namedCurve: 'secp256k1' })), 'got an EC key on secp256k1'],
    ['Ed448', pem(generateKeyPairSync('ed448')), 'got a key of type ed448'],
    ['X25519', pem(generateKeyPairSync('x25519')), 'got a key of type x25519'],
    ['RSA-PSS', pem(generateKeyPairSync('rsa-pss', { modulusLength: 2048 })), 'got a key of type rsa-pss'],
    ['DSA', pem(generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 })), 'got a key of type dsa']
  ]

  it.each(unsupported)('%s is refused with a one-line ConfigError naming the variable', async (_name, pair, reason) => {
    const cases: Array<[string, Parameters<typeof loadSigningKeys>[0]]> = [
      ['JWT_PRIVATE_KEY', { ...pair, previous: [] }],
      ['JWT_PREVIOUS_PUBLIC_KEYS', { ...generateSigningKeyPair('ec'), previous: [pair.publicKey] }]
    ]
    for (const [variable, keys] of cases) {
      const error = await loadSigningKeys(keys).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as ConfigError).variable).toBe(variable)
      expect((error as ConfigError).message).toBe(`${variable} must be an RSA key of at least 2048 bits (RS256), an EC P-256 key (ES256) or an Ed25519 key (EdDSA); ${reason}`)
    }
  })

  it('a public key of another type than the private key is not its public half', async () => {
    const error = await loadSigningKeys({ privateKey: generateSigningKeyPair('ec').privateKey, publicKey: generateSigningKeyPair('ed25519').publicKey, previous: [] }).catch((caught: unknown) => caught)
    expect(error).toMatchObject({ variable: 'JWT_PUBLIC_KEY', message: 'JWT_PUBLIC_KEY is not the public half of JWT_PRIVATE_KEY' })
  })
})
