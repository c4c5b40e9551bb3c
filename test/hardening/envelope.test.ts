import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { EnvelopeError, open, seal } from '../../src/envelope.js'

describe('envelope encryption under KEY_ENCRYPTION_KEY', () => {
  const kek = randomBytes(32)
  const secret = Buffer.from('a private key, say')

  it('opens what it sealed, under the same key and context only', () => {
    const sealed = seal(kek, secret, 'org-key:a:kid1')
    expect(sealed).not.toContain(secret.toString('base64url'))
    expect(open(kek, sealed, 'org-key:a:kid1')).toEqual(secret)
    expect(seal(kek, secret, 'org-key:a:kid1')).not.toBe(sealed) // fresh data key and IVs each time
    expect(() => open(kek, sealed, 'org-key:b:kid1')).toThrow(EnvelopeError)
    expect(() => open(randomBytes(32), sealed, 'org-key:a:kid1')).toThrow(/another KEY_ENCRYPTION_KEY/)
    const parts = sealed.split('.')
    const flipped = Buffer.from(parts[5] as string, 'base64url')
    flipped[0] = (flipped[0] as number) ^ 1
    parts[5] = flipped.toString('base64url')
    expect(() => open(kek, parts.join('.'), 'org-key:a:kid1')).toThrow(/altered/)
    expect(() => open(kek, 'junk', 'x')).toThrow(EnvelopeError)
  })

  it('KEY_ENCRYPTION_KEY must be 32 bytes in base64', () => {
    expect(loadConfig({ KEY_ENCRYPTION_KEY: kek.toString('base64') }).keyEncryptionKey).toEqual(kek)
    expect(() => loadConfig({ KEY_ENCRYPTION_KEY: randomBytes(16).toString('base64') })).toThrow(/KEY_ENCRYPTION_KEY/)
    expect(() => loadConfig({ KEY_ENCRYPTION_KEY: 'not base64 at all!' })).toThrow(/KEY_ENCRYPTION_KEY/)
  })
})
