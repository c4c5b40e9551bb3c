import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** A running embedded PostgreSQL: PGlite behind a loopback socket that speaks the wire protocol. */
export interface EmbeddedPostgres {
  /** Connection string for the `postgres` driver; give it ONE connection (PGlite has a single session). */
  url: string
  stop(): Promise<void>
}

/**
 * Starts PGlite persisted in `directory` (or in memory when it is undefined) and serves it on 127.0.0.1 on a
 * free port, so the application reaches it through the same driver and code path as a real server.
 * Connections beyond the first share PGlite's one session: use them one after another, never at once.
 */
export async function startEmbeddedPostgres (directory?: string, maxConnections = 1): Promise<EmbeddedPostgres> {
  if (directory !== undefined) mkdirSync(directory, { recursive: true })
  // Loaded only when used: a production process on a real PostgreSQL never pays for PGlite's WASM.
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
  const db = await PGlite.create(directory ?? 'memory://')
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections })
  await server.start()
  const address = (server as unknown as { server: import('node:net').Server }).server.address()
  if (address === null || typeof address === 'string') throw new Error('embedded PostgreSQL did not bind a TCP port')
  return {
    url: `postgres://postgres@127.0.0.1:${address.port}/postgres`,
    async stop () {
      await server.stop()
      await db.close()
    }
  }
}

/**
 * Whether `directory` holds no embedded database yet: the next start creates one, running PostgreSQL's initdb in
 * WebAssembly, which takes from a few seconds to most of a minute on a busy machine.
 */
export function isNewEmbeddedDatabase (directory: string): boolean {
  return !existsSync(join(directory, 'PG_VERSION'))
}

/** How often a slow step says it is still at work. */
export const HEARTBEAT_INTERVAL_MS = 10_000

/**
 * Awaits `work`, calling `tick` with the seconds spent so far every `intervalMs` until it settles, so a long
 * silent step (the first embedded start) shows it is alive.
 */
export async function withHeartbeat<T> (work: Promise<T>, tick: (seconds: number) => void, intervalMs = HEARTBEAT_INTERVAL_MS): Promise<T> {
  let seconds = 0
  const timer = setInterval(() => { seconds += intervalMs / 1000; tick(seconds) }, intervalMs)
  try {
    return await work
  } finally {
    clearInterval(timer)
  }
}

/**
 * Starts the embedded default's PostgreSQL persisted in `directory`, saying what it does: whether it creates the
 * database (a first start) or opens it, then every HEARTBEAT_INTERVAL_MS that it is still starting, with the
 * seconds spent so far. The server logs these lines; the CLIs print them.
 */
export async function startEmbeddedPostgresSaying (directory: string, say: (message: string, seconds?: number) => void): Promise<EmbeddedPostgres> {
  say(isNewEmbeddedDatabase(directory)
    ? 'creating the embedded PostgreSQL database in DATA_DIR: the first start takes up to a minute'
    : 'starting the embedded PostgreSQL')
  return await withHeartbeat(startEmbeddedPostgres(directory), (seconds) => { say('embedded PostgreSQL still starting', seconds) })
}

/**
 * How a command-line tool shows those lines: on stderr, so its output (what a script reads, or what the docs show
 * db:migrate printing) stays the same on either back-end.
 */
export function sayOnStderr (message: string, seconds?: number): void {
  console.error(seconds === undefined ? message : `${message} (${seconds} s)`)
}

/** A signing pair in PEM (PKCS#8 private, SPKI public). */
export interface PemKeyPair {
  privateKey: string
  publicKey: string
}

/** The key types a signing pair may be generated as, with the JWS algorithm each signs with. */
export const SIGNING_KEY_TYPES = { rsa: 'RS256', ec: 'ES256', ed25519: 'EdDSA' } as const
export type SigningKeyType = keyof typeof SIGNING_KEY_TYPES

/** The key type that signs with a JWS algorithm (RS256, ES256 or EdDSA); throws for any other. */
export function signingKeyTypeOf (alg: string): SigningKeyType {
  const type = (Object.keys(SIGNING_KEY_TYPES) as SigningKeyType[]).find((name) => SIGNING_KEY_TYPES[name] === alg)
  if (type === undefined) throw new Error(`the signing algorithm must be one of ${Object.values(SIGNING_KEY_TYPES).join(', ')}; got ${alg}`)
  return type
}

/** Generates a fresh signing pair of the type: RSA-2048 (the default), EC P-256 or Ed25519. */
export function generateSigningKeyPair (type: SigningKeyType = 'rsa'): PemKeyPair {
  const { privateKey, publicKey } = type === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKey: publicKey.export({ type: 'spki', format: 'pem' }) as string }
}

/**
 * The embedded default's signing keys: generated once, then read back from `directory` on every start,
 * so tokens survive a restart. The private key file is readable by its owner only.
 */
export function loadOrCreateDevelopmentKeys (directory: string): PemKeyPair & { created: boolean } {
  const privatePath = join(directory, 'jwt-private.pem')
  const publicPath = join(directory, 'jwt-public.pem')
  if (existsSync(privatePath) && existsSync(publicPath)) {
    return { privateKey: readFileSync(privatePath, 'utf8'), publicKey: readFileSync(publicPath, 'utf8'), created: false }
  }
  mkdirSync(directory, { recursive: true, mode: 0o700 })
  const pair = generateSigningKeyPair()
  writeFileSync(privatePath, pair.privateKey, { mode: 0o600 })
  writeFileSync(publicPath, pair.publicKey, { mode: 0o600 })
  return { ...pair, created: true }
}

/**
 * The development KEY_ENCRYPTION_KEY kept in `directory` (made on first use): sealed secrets in the embedded
 * database stay readable across restarts without configuration. Never used in production.
 */
export function loadOrCreateDevelopmentKeyEncryptionKey (directory: string): Buffer {
  const path = join(directory, 'key-encryption-key')
  if (!existsSync(path)) {
    mkdirSync(directory, { recursive: true, mode: 0o700 })
    // Written aside, then linked into place: processes starting together on one DATA_DIR never read a half-written
    // key, and the first link wins (the others find the file and read it).
    const aside = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`
    writeFileSync(aside, randomBytes(32).toString('base64'), { mode: 0o600 })
    try {
      linkSync(aside, path)
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error
    } finally {
      unlinkSync(aside)
    }
  }
  return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64')
}
