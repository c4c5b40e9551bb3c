/**
 * `npm run audit:verify [-- --org <slug>]`: walks the audit chain of each organization of DATABASE_URL (or the
 * embedded default in DATA_DIR), or of the one named, and prints `N events verified` (exit 0), or names the first
 * event that breaks a chain (exit 1).
 */
import { join } from 'node:path'
import { verifyChain } from '../plugins/audit/index.js'
import { ConfigError, loadConfig } from './config.js'
import { createSql } from './database.js'
import { sayOnStderr, startEmbeddedPostgresSaying } from './embedded.js'
import { loadDotEnv } from './dotenv.js'

/** The slug of `--org <slug>` (or `--org=<slug>`), or undefined for every organization. */
function orgArgument (args: string[]): string | undefined {
  const index = args.findIndex((arg) => arg === '--org' || arg.startsWith('--org='))
  if (index === -1) return undefined
  const value = args[index] === '--org' ? args[index + 1] : (args[index] as string).slice('--org='.length)
  if (value === undefined || value === '') throw new ConfigError('--org', 'needs the slug of an organization')
  return value
}

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgresSaying(join(config.dataDir, 'pgdata'), sayOnStderr) : undefined
  const sql = createSql(config.databaseUrl ?? (embedded as { url: string }).url, 1)
  try {
    const slug = orgArgument(process.argv.slice(2))
    // organizations has no row-level security: it is how an organization is found before any is set.
    const organizations = await sql<Array<{ id: string, slug: string }>>`
      select id, slug from organizations ${slug === undefined ? sql`` : sql`where slug = ${slug}`} order by created_at, slug`
    if (organizations.length === 0) {
      console.error(`audit:verify: no organization ${slug ?? ''}`)
      return 2
    }
    let verified = 0
    for (const organization of organizations) {
      const result = await verifyChain(sql, organization.id)
      if (!result.ok) {
        console.error(`audit:verify: chain of organization ${organization.slug} broken at event seq ${result.seq} (id ${result.id}): ${result.reason}; ${result.verified} events before it verified`)
        return 1
      }
      if (organizations.length > 1) console.log(`${organization.slug}: ${result.verified} events verified`)
      verified += result.verified
    }
    console.log(`${verified} events verified`)
    return 0
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
