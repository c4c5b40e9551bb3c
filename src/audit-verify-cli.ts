/**
 * `npm run audit:verify [-- --org <slug>] [--archive <dir>]`: walks the audit chain of each organization of
 * DATABASE_URL (or the embedded default in DATA_DIR), or of the one named, from its last signed checkpoint (after a
 * retention prune) or from the first event, and prints `N events verified` (exit 0), or names what breaks a chain
 * (exit 1). With --archive, the archive files in that directory (AUDIT_ARCHIVE_DIR) are verified too: their chain,
 * and their link to the checkpoints and the table.
 */
import { checkpointKeys, checkpointsOf, verifyArchive, verifyChain, verifyCheckpoints } from '../plugins/audit/index.js'
import { allOrganizations } from '../plugins/organizations/public.js'
import { loadIssuerKeys, openDatabase, option, selectOrganizations } from './cli/offline.js'
import { ConfigError, loadConfig } from './config.js'
import { inOrganization } from './database.js'
import { loadDotEnv } from './dotenv.js'

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const args = process.argv.slice(2)
  const archiveDir = option(args, '--archive')
  const slug = option(args, '--org')
  const { sql, close } = await openDatabase(config)
  try {
    // organizations has no row-level security: it is how an organization is found before any is set.
    const organizations = await allOrganizations(sql).then((all) => selectOrganizations(all, slug)).catch((error: unknown) => {
      if (error instanceof ConfigError) return []
      throw error
    })
    if (organizations.length === 0) {
      console.error(`audit:verify: no organization ${slug ?? ''}`)
      return 2
    }
    // Loaded only once a checkpoint needs them: verifying a chain never pruned reads no key.
    let issuerKeys: Awaited<ReturnType<typeof loadIssuerKeys>>['keys'] | undefined
    let verified = 0
    let archived = 0
    for (const organization of organizations) {
      const checkpoints = await inOrganization(sql, organization.id, async (tx) => await checkpointsOf(tx))
      if (checkpoints.length > 0) {
        issuerKeys ??= (await loadIssuerKeys(config)).keys
        const signed = await verifyCheckpoints(checkpoints, organization.id, await checkpointKeys(sql, issuerKeys, organization.id))
        if (!signed.ok) {
          console.error(`audit:verify: checkpoint seq ${signed.seq} of organization ${organization.slug} does not verify: ${signed.reason}`)
          return 1
        }
      }
      const result = await verifyChain(sql, organization.id)
      if (!result.ok) {
        console.error(`audit:verify: chain of organization ${organization.slug} broken at event seq ${result.seq} (id ${result.id}): ${result.reason}; ${result.verified} events before it verified`)
        return 1
      }
      if (archiveDir !== undefined) {
        const archive = await verifyArchive(archiveDir, organization.id, checkpoints)
        if (!archive.ok) {
          console.error(`audit:verify: archive of organization ${organization.slug} broken: ${archive.reason}`)
          return 1
        }
        archived += archive.events
      }
      const from = result.from === undefined ? '' : ` from checkpoint seq ${result.from.seq}`
      if (organizations.length > 1) console.log(`${organization.slug}: ${result.verified} events verified${from}`)
      verified += result.verified
    }
    console.log(archiveDir === undefined ? `${verified} events verified` : `${verified} events verified, ${archived} archived events verified`)
    return 0
  } finally {
    await close()
  }
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof ConfigError) console.error(`audit:verify: ${error.message}`)
  else if ((error as { code?: string }).code === '42P01') console.error('audit:verify: the database has no audit_events table: run npm run db:migrate first')
  else console.error(`audit:verify: ${(error as Error).message ?? String(error)}`)
  // 2, not 1: the chain could not be read, which is not the same as a broken chain.
  process.exitCode = 2
})
