import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import { open, seal } from '../../src/envelope.js'
import type { PublicSigningKey, SigningAlgorithm, SigningKeys } from '../infra/keys.js'
import type { OrganizationKeyRow } from './repository.js'

/** What an organization's private key is sealed for: the organization and the kid, so a copy elsewhere never opens. */
const sealContext = (orgId: string, kid: string): string => `organization-key:${orgId}:${kid}`

/** A new key pair of the algorithm given (the default organization's), its private half sealed under `kek`. */
export async function generateOrganizationKey (kek: Buffer, orgId: string, alg: SigningAlgorithm): Promise<OrganizationKeyMaterial> {
  const { privateKey, publicKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    : alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return await sealOrganizationKey(kek, orgId, alg, privateKey, publicKey)
}

export interface OrganizationKeyMaterial { kid: string, alg: SigningAlgorithm, public_jwk: Record<string, unknown>, sealed_private: string }

/**
 * An organization's key row from a key pair: the public JWK with its RFC 7638 thumbprint as kid, the private half
 * sealed for this organization and kid. The benchmark seeds organizations through here too (with key pairs it
 * generated ahead), so what it stores opens exactly as the server's own keys do.
 */
export async function sealOrganizationKey (kek: Buffer, orgId: string, alg: SigningAlgorithm, privateKey: KeyObject, publicKey: KeyObject): Promise<OrganizationKeyMaterial> {
  const members = await exportJWK(publicKey)
  const kid = await calculateJwkThumbprint(members, 'sha256')
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' })
  try {
    return { kid, alg, public_jwk: { ...members, kid, use: 'sig', alg }, sealed_private: seal(kek, pkcs8, sealContext(orgId, kid)) }
  } finally {
    pkcs8.fill(0)
  }
}

export function publishedKeyOf (row: OrganizationKeyRow): PublicSigningKey {
  return {
    kid: row.kid,
    alg: row.alg as SigningAlgorithm,
    key: createPublicKey({ key: row.public_jwk as never, format: 'jwk' }),
    jwk: row.public_jwk as PublicSigningKey['jwk']
  }
}

/**
 * An organization's SigningKeys from its published rows (newest first): the newest key already active signs, every
 * published one verifies and is in the JWKS (one not yet active is published ahead of signing). Undefined when no
 * key is active yet. A kid's material never changes, so whatever `previous` (the same organization's keys as read
 * before) already parsed is reused, and `previous` itself when the same keys sign and are published: a refresh of
 * an unchanged organization opens no sealed key and parses nothing.
 */
export function signingKeysOf (kek: Buffer, orgId: string, rows: OrganizationKeyRow[], now = new Date(), previous?: SigningKeys): SigningKeys | undefined {
  const active = rows.find((row) => row.activates_at <= now)
  if (active === undefined) return undefined
  if (previous !== undefined && previous.current.kid === active.kid && previous.byKid.size === rows.length && rows.every((row) => previous.byKid.has(row.kid))) return previous
  const privateKey = previous?.current.kid === active.kid
    ? previous.current.privateKey
    : createPrivateKey({ key: open(kek, active.sealed_private, sealContext(orgId, active.kid)), format: 'der', type: 'pkcs8' })
  const published = rows.map((row) => previous?.byKid.get(row.kid) ?? publishedKeyOf(row))
  const current = published.find((key) => key.kid === active.kid) as PublicSigningKey
  const byKid = new Map<string, PublicSigningKey>([[current.kid, current], ...published.filter((key) => key !== current).map((key): [string, PublicSigningKey] => [key.kid, key])])
  return {
    current: { ...current, privateKey },
    byKid,
    algorithms: [...new Set([...byKid.values()].map((key) => key.alg))],
    jwks: { keys: [...byKid.values()].map((key) => key.jwk) }
  }
}
