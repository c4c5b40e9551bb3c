import { randomBytes, randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { generateOrganizationKey, signingKeysOf } from '../../plugins/organizations/signing-keys.js'
import type { OrganizationKeyRow } from '../../plugins/organizations/repository.js'

// The resolver re-reads every organization it serves about every 30 s; across 1,000 organizations, opening and
// parsing each one's keys again was a measurable share of the token endpoint (docs/performance.md).
describe('an organization\'s signing keys, read again', () => {
  const kek = randomBytes(32)
  const orgId = randomUUID()
  const rowOf = async (activatesAt: Date): Promise<OrganizationKeyRow> => ({ ...(await generateOrganizationKey(kek, orgId, 'ES256')), activates_at: activatesAt, retired_at: null })

  it('are the very same keys when nothing changed, and reuse what was parsed when a key was added', async () => {
    const now = new Date('2026-12-01T00:00:00Z')
    const first = await rowOf(new Date(now.getTime() - 60_000))
    const keys = signingKeysOf(kek, orgId, [first], now)
    expect(keys?.current.kid).toBe(first.kid)
    expect(signingKeysOf(kek, orgId, [first], now, keys)).toBe(keys)

    // A rotation published ahead of activation: the JWKS gains the key, the old one still signs with its KeyObject.
    const next = await rowOf(new Date(now.getTime() + 60_000))
    const published = signingKeysOf(kek, orgId, [next, first], now, keys)
    expect(published).not.toBe(keys)
    expect(published?.current.kid).toBe(first.kid)
    expect(published?.current.privateKey).toBe(keys?.current.privateKey)
    expect(published?.jwks.keys.map((jwk) => jwk.kid)).toEqual([first.kid, next.kid])

    // Once it activates, the new key signs: its sealed half is opened then, and the old one still verifies.
    const later = new Date(now.getTime() + 120_000)
    const rotated = signingKeysOf(kek, orgId, [next, first], later, published)
    expect(rotated?.current.kid).toBe(next.kid)
    expect(rotated?.current.privateKey).not.toBe(keys?.current.privateKey)
    expect(rotated?.byKid.get(first.kid)).toBe(published?.byKid.get(first.kid))

    // The old key leaves the JWKS once retired (its row is no longer published).
    expect([...(signingKeysOf(kek, orgId, [next], later, rotated)?.byKid.keys() ?? [])]).toEqual([next.kid])
  })
})
