/**
 * What the operator commands that work on the database directly (audit:archive, audit:verify, evidence) share:
 * the database of DATABASE_URL (or the embedded default in DATA_DIR), opened as its owner, and the issuer's keys as
 * the server loads them.
 */
import { join } from 'node:path'
import { loadSigningKeys, type SigningKeys } from '../../plugins/infra/keys.js'
import { ConfigError, type Config } from '../config.js'
import { createSql, type Sql } from '../database.js'
import { loadOrCreateDevelopmentKeyEncryptionKey, loadOrCreateDevelopmentKeys, sayOnStderr, startEmbeddedPostgresSaying } from '../embedded.js'

/** The database, with one connection, and how to close it. */
export async function openDatabase (config: Config): Promise<{ sql: Sql, close: () => Promise<void> }> {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgresSaying(join(config.dataDir, 'pgdata'), sayOnStderr) : undefined
  const sql = createSql(config.databaseUrl ?? (embedded as { url: string }).url, 1)
  return {
    sql,
    close: async () => {
      await sql.end({ timeout: 5 })
      await embedded?.stop()
    }
  }
}

/** The default issuer's keys (JWT_PRIVATE_KEY, or the development pair in DATA_DIR) and KEY_ENCRYPTION_KEY. */
export async function loadIssuerKeys (config: Config): Promise<{ keys: SigningKeys, keyEncryptionKey: Buffer | undefined }> {
  const pems = config.jwtPrivateKey !== undefined && config.jwtPublicKey !== undefined
    ? { privateKey: config.jwtPrivateKey, publicKey: config.jwtPublicKey }
    : loadOrCreateDevelopmentKeys(config.dataDir)
  const keys = await loadSigningKeys({ ...pems, previous: config.jwtPreviousPublicKeys })
  const keyEncryptionKey = config.keyEncryptionKey ?? (config.nodeEnv === 'production' ? undefined : loadOrCreateDevelopmentKeyEncryptionKey(config.dataDir))
  return { keys, keyEncryptionKey }
}

/** The value of `--name <value>` (or `--name=<value>`), or undefined when absent; a ConfigError when it has none. */
export function option (args: string[], name: string): string | undefined {
  const index = args.findIndex((arg) => arg === name || arg.startsWith(`${name}=`))
  if (index === -1) return undefined
  const value = args[index] === name ? args[index + 1] : (args[index] as string).slice(name.length + 1)
  if (value === undefined || value === '' || value.startsWith('--')) throw new ConfigError(name, 'needs a value')
  return value
}

/** The organizations `--org <slug>` names (one), or every one `all` lists; a ConfigError for an unknown slug. */
export async function selectOrganizations<T extends { slug: string }> (all: T[], slug: string | undefined): Promise<T[]> {
  if (slug === undefined) return all
  const found = all.filter((organization) => organization.slug === slug)
  if (found.length === 0) throw new ConfigError('--org', `names no organization: ${slug}`)
  return found
}
