import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import fp from 'fastify-plugin'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import type { Static } from 'typebox'
import type { JwkSchema } from '../../schemas/oidc.js'
import { ConfigError } from '../../src/config.js'
import { loadOrCreateDevelopmentKeyEncryptionKey, loadOrCreateDevelopmentKeys, type SIGNING_KEY_TYPES, type SigningKeyType } from '../../src/embedded.js'

/** The JWS algorithms a signing key may have; the algorithm follows the key (RS256 stays the default). */
export type SigningAlgorithm = typeof SIGNING_KEY_TYPES[SigningKeyType]

/** A published verification key: its RFC 7638 thumbprint as kid, its algorithm, the key, and its public JWK. */
export interface PublicSigningKey {
  kid: string
  alg: SigningAlgorithm
  key: KeyObject
  jwk: Static<typeof JwkSchema>
}

/** The current signing key and every key a token may verify against. */
export interface SigningKeys {
  /** The key new tokens are signed with. */
  current: PublicSigningKey & { privateKey: KeyObject }
  /** Current first, then JWT_PREVIOUS_PUBLIC_KEYS, by kid. */
  byKid: Map<string, PublicSigningKey>
  /** The algorithms of the published keys, the current key's first: what a token of this server may carry. */
  algorithms: SigningAlgorithm[]
  /** The RFC 7517 JWK Set served at /.well-known/jwks.json. */
  jwks: { keys: PublicSigningKey['jwk'][] }
}

declare module 'fastify' {
  interface FastifyInstance {
    keys: SigningKeys
    /**
     * What seals secrets kept in the database (src/envelope.ts): KEY_ENCRYPTION_KEY, or outside production a
     * generated one kept in DATA_DIR. Undefined in production without the variable: sealing is then refused.
     */
    keyEncryptionKey: Buffer | undefined
  }
}

const SUPPORTED = 'an RSA key of at least 2048 bits (RS256), an EC P-256 key (ES256) or an Ed25519 key (EdDSA)'

/** The algorithm a key signs with, or a ConfigError naming the variable for a key this server does not sign with. */
function algorithmOf (variable: string, key: KeyObject): SigningAlgorithm {
  const type = key.asymmetricKeyType
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < 2048) throw new ConfigError(variable, `must be ${SUPPORTED}; got an RSA key of ${bits} bits`)
    return 'RS256'
  }
  if (type === 'ec') {
    // P-384 and P-521 (ES384, ES512) buy nothing here over P-256 and are not required of resource servers.
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve !== 'prime256v1') throw new ConfigError(variable, `must be ${SUPPORTED}; got an EC key on ${curve ?? 'an unknown curve'}`)
    return 'ES256'
  }
  if (type === 'ed25519') return 'EdDSA'
  throw new ConfigError(variable, `must be ${SUPPORTED}; got a key of type ${type ?? 'unknown'}`)
}

async function publicKeyOf (variable: string, key: KeyObject): Promise<PublicSigningKey> {
  const alg = algorithmOf(variable, key)
  // The key is public, so its JWK holds public members only: kty with n, e (RSA) or crv, x (and y for EC).
  const members = await exportJWK(key)
  const kid = await calculateJwkThumbprint(members, 'sha256')
  return { kid, alg, key, jwk: { ...members, kid, use: 'sig', alg } as Static<typeof JwkSchema> }
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
    algorithms: [...new Set([...byKid.values()].map((key) => key.alg))],
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
  // Nothing is sealed yet on a start that cannot write DATA_DIR: that start goes on, and sealing is refused.
  const developmentKeyEncryptionKey = (): Buffer | undefined => {
    try {
      return loadOrCreateDevelopmentKeyEncryptionKey(config.dataDir)
    } catch (error) {
      app.log.warn({ dataDir: config.dataDir, err: { message: (error as Error).message } }, 'KEY_ENCRYPTION_KEY not set and none could be kept in DATA_DIR: sealing secrets is refused')
      return undefined
    }
  }
  // The keys as loaded; request-time code reads its issuer's keys from the issuer context (plugins/tokens/issuer-context.ts).
  app.decorate('keys', keys)
  app.decorate('keyEncryptionKey', config.keyEncryptionKey ?? (config.nodeEnv === 'production' ? undefined : developmentKeyEncryptionKey()))
  app.log.info({ kid: keys.current.kid, alg: keys.current.alg, published: [...keys.byKid.keys()] }, 'signing key loaded')
}, { name: 'keys', dependencies: ['config'] })
