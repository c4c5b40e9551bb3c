/**
 * `npm run audit:verify`: walks the audit chain of DATABASE_URL (or the embedded default in DATA_DIR) and prints
 * `N events verified` (exit 0), or names the first event that breaks the chain (exit 1).
 */
import { join } from 'node:path'
import { verifyChain } from '../plugins/audit/index.js'
import { ConfigError, loadConfig } from './config.js'
import { createSql } from './database.js'
import { sayOnStderr, startEmbeddedPostgresSaying } from './embedded.js'
import { loadDotEnv } from './dotenv.js'

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgresSaying(join(config.dataDir, 'pgdata'), sayOnStderr) : undefined
  const sql = createSql(config.databaseUrl ?? (embedded as { url: string }).url, 1)
  try {
    const result = await verifyChain(sql)
    if (result.ok) {
      console.log(`${result.verified} events verified`)
      return 0
    }
    console.error(`audit:verify: chain broken at event seq ${result.seq} (id ${result.id}): ${result.reason}; ${result.verified} events before it verified`)
    return 1
  } finally {
    await sql.end({ timeout: 5 })
    await embedded?.stop()
  }
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof ConfigError) console.error(`audit:verify: ${error.message}`)
  else if ((error as { code?: string }).code === '42P01') console.error('audit:verify: the database has no audit_events table: run npm run db:migrate first')
  else console.error(`audit:verify: ${(error as Error).message ?? String(error)}`)
  // 2, not 1: the chain could not be read, which is not the same as a broken chain.
  process.exitCode = 2
})
