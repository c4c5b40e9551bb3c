/** `npm run db:migrate`: applies pending migrations to DATABASE_URL (or the embedded default in DATA_DIR). */
import { join } from 'node:path'
import { ConfigError, loadConfig } from './config.js'
import { createSql } from './database.js'
import { sayOnStderr, startEmbeddedPostgresSaying } from './embedded.js'
import { migrate, MigrationError } from './migrate.js'
import { loadDotEnv } from './dotenv.js'

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgresSaying(join(config.dataDir, 'pgdata'), sayOnStderr) : undefined
  const sql = createSql(config.databaseUrl ?? (embedded as { url: string }).url, 1)
  try {
    const applied = await migrate(sql, (line) => console.log(line), undefined, config.databaseAppRole)
    console.log(applied.length === 0 ? 'database is up to date' : `${applied.length} migration(s) applied`)
    return 0
  } finally {
    await sql.end({ timeout: 5 })
    await embedded?.stop()
  }
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof ConfigError || error instanceof MigrationError) console.error(`db:migrate: ${error.message}`)
  else console.error(`db:migrate: ${(error as Error).message ?? String(error)}`)
  process.exitCode = 1
})
