import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

/**
 * Envelope encryption of secrets kept in the database (organizations' private keys, webhook secrets) under
 * KEY_ENCRYPTION_KEY: each value is encrypted with its own random data key (AES-256-GCM), and the data key is
 * encrypted with the key-encryption key (AES-256-GCM). `context` (what the value is and whose: "org-key:{org}:{kid}")
 * is authenticated with both, so a ciphertext copied onto another row does not decrypt there.
 *
 * Sealed form: `v1.{kek id}.{iv}.{wrapped data key}.{iv}.{ciphertext}`, each part base64url, each GCM tag appended to
 * its ciphertext. The kek id (the first 8 bytes of the key's SHA-256) names which key sealed it, so a wrong
 * KEY_ENCRYPTION_KEY is reported as such, not as corruption.
 */

/** A sealed value could not be opened: another key sealed it, or it was altered or moved. */
export class EnvelopeError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'EnvelopeError'
  }
}

const TAG_BYTES = 16

/** The id a sealed value records of the key-encryption key that sealed it. */
export function keyEncryptionKeyId (kek: Buffer): string {
  return createHash('sha256').update(kek).digest().subarray(0, 8).toString('base64url')
}

function encrypt (key: Buffer, plaintext: Buffer, context: string): { iv: Buffer, sealed: Buffer } {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  cipher.setAAD(Buffer.from(context, 'utf8'))
  return { iv, sealed: Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]) }
}

function decrypt (key: Buffer, iv: Buffer, sealed: Buffer, context: string): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, iv)
  decipher.setAAD(Buffer.from(context, 'utf8'))
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
  return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()])
}

/** Seals `plaintext` under `kek` (32 bytes) for `context`. */
export function seal (kek: Buffer, plaintext: Buffer, context: string): string {
  const dataKey = randomBytes(32)
  const wrapped = encrypt(kek, dataKey, context)
  const value = encrypt(dataKey, plaintext, context)
  dataKey.fill(0)
  return ['v1', keyEncryptionKeyId(kek), wrapped.iv, wrapped.sealed, value.iv, value.sealed]
    .map((part) => typeof part === 'string' ? part : part.toString('base64url')).join('.')
}

/** Opens what `seal` made with the same key and context; EnvelopeError otherwise. */
export function open (kek: Buffer, sealed: string, context: string): Buffer {
  const parts = sealed.split('.')
  if (parts.length !== 6 || parts[0] !== 'v1') throw new EnvelopeError('not a sealed value')
  if (parts[1] !== keyEncryptionKeyId(kek)) throw new EnvelopeError('sealed under another KEY_ENCRYPTION_KEY')
  const [wrapIv, wrapped, iv, ciphertext] = parts.slice(2).map((part) => Buffer.from(part, 'base64url')) as [Buffer, Buffer, Buffer, Buffer]
  try {
    const dataKey = decrypt(kek, wrapIv, wrapped, context)
    try {
      return decrypt(dataKey, iv, ciphertext, context)
    } finally {
      dataKey.fill(0)
    }
  } catch {
    throw new EnvelopeError('sealed value was altered, or belongs to another row')
  }
}
