import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import fp from 'fastify-plugin'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import type { Static } from 'typebox'
import type { JwkSchema } from '../../schemas/oidc.js'
import { ConfigError } from '../../src/config.js'
import { loadOrCreateDevelopmentKeys } from '../../src/embedded.js'

/** A published verification key: its RFC 7638 thumbprint as kid, the key, and its public JWK. */
export interface PublicSigningKey {
  kid: string
  key: KeyObject
  jwk: Static<typeof JwkSchema>
}

/** The current signing key and every key a token may verify against. */
export interface SigningKeys {
  /** The key new tokens are signed with. */
  current: PublicSigningKey & { privateKey: KeyObject }
  /** Current first, then JWT_PREVIOUS_PUBLIC_KEYS, by kid. */
  byKid: Map<string, PublicSigningKey>
  /** The RFC 7517 JWK Set served at /.well-known/jwks.json. */
  jwks: { keys: PublicSigningKey['jwk'][] }
}

declare module 'fastify' {
  interface FastifyInstance {
    keys: SigningKeys
  }
}

async function publicKeyOf (variable: string, key: KeyObject): Promise<PublicSigningKey> {
  if (key.asymmetricKeyType !== 'rsa') throw new ConfigError(variable, `must be an RSA key (RS256), got ${key.asymmetricKeyType ?? 'unknown'}`)
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
  if (bits < 2048) throw new ConfigError(variable, `must be an RSA key of at least 2048 bits, got ${bits}`)
  const exported = await exportJWK(key)
  const kid = await calculateJwkThumbprint({ kty: 'RSA', n: exported.n, e: exported.e }, 'sha256')
  return { kid, key, jwk: { kty: 'RSA', n: exported.n as string, e: exported.e as string, kid, use: 'sig', alg: 'RS256' } }
}

function parse<T> (variable: string, make: () => T): T {
  try {
    return make()
  } catch {
    throw new ConfigError(variable, 'could not be parsed as a PEM key')
  }
}

/** Loads the signing key pair (or the embedded default's generated one) and the previous public keys. */
export async function loadSigningKeys (pems: { privateKey: string, publicKey: string, previous: string[] }): Promise<SigningKeys> {
  const privateKey = parse('JWT_PRIVATE_KEY', () => createPrivateKey(pems.privateKey))
  const publicKey = parse('JWT_PUBLIC_KEY', () => createPublicKey(pems.publicKey))
  const current = await publicKeyOf('JWT_PRIVATE_KEY', createPublicKey(privateKey))
  const declared = await publicKeyOf('JWT_PUBLIC_KEY', publicKey)
  if (declared.kid !== current.kid) throw new ConfigError('JWT_PUBLIC_KEY', 'is not the public half of JWT_PRIVATE_KEY')
  const byKid = new Map<string, PublicSigningKey>([[current.kid, current]])
  for (const pem of pems.previous) {
    const previous = await publicKeyOf('JWT_PREVIOUS_PUBLIC_KEYS', parse('JWT_PREVIOUS_PUBLIC_KEYS', () => createPublicKey(pem)))
    if (!byKid.has(previous.kid)) byKid.set(previous.kid, previous)
  }
  return {
    current: { ...current, privateKey },
    byKid,
    jwks: { keys: [...byKid.values()].map((key) => key.jwk) }
  }
}

export default fp(async (app) => {
  const { config } = app
  let privateKey = config.jwtPrivateKey
  let publicKey = config.jwtPublicKey
  if (privateKey === undefined || publicKey === undefined) {
    // config refuses to go without keys in production, so this is a laptop or a test.
    const generated = loadOrCreateDevelopmentKeys(config.dataDir)
    privateKey = generated.privateKey
    publicKey = generated.publicKey
    app.log.warn({ dataDir: config.dataDir }, generated.created
      ? 'JWT keys not set: generated an RSA-2048 development key pair in DATA_DIR'
      : 'JWT keys not set: using the development key pair kept in DATA_DIR')
  }
  const keys = await loadSigningKeys({ privateKey, publicKey, previous: config.jwtPreviousPublicKeys })
  app.decorate('keys', keys)
  app.log.info({ kid: keys.current.kid, published: [...keys.byKid.keys()] }, 'signing key loaded')
}, { name: 'keys', dependencies: ['config'] })
