/**
 * `npm run audit:archive -- --before <RFC 3339> [--org <slug>]`: archives the audit events older than the instant
 * (at most now) to AUDIT_ARCHIVE_DIR, then prunes them with a signed checkpoint, as the daily retention job does
 * (docs/devops/compliance.md). Prints one line per organization; exit 0, or 2 when it could not run.
 */
import { GroupCommitTrail } from '../plugins/audit/trail.js'
import { archiveAuditTrail, serverRetentionDeps } from '../plugins/audit/index.js'
import { allOrganizations } from '../plugins/organizations/public.js'
import { loadIssuerKeys, openDatabase, option, selectOrganizations } from './cli/offline.js'
import { ConfigError, loadConfig } from './config.js'
import { loadDotEnv } from './dotenv.js'

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const args = process.argv.slice(2)
  const beforeText = option(args, '--before')
  if (beforeText === undefined) throw new ConfigError('--before', 'is required: the RFC 3339 instant before which events are archived and pruned')
  const before = new Date(beforeText)
  if (!/^\d{4}-\d{2}-\d{2}T/.test(beforeText) || Number.isNaN(before.getTime())) throw new ConfigError('--before', `must be an RFC 3339 instant, got "${beforeText}"`)
  if (before.getTime() > Date.now()) throw new ConfigError('--before', 'must not be in the future')
  const { keys, keyEncryptionKey } = await loadIssuerKeys(config)
  const { sql, close } = await openDatabase(config)
  const audit = new GroupCommitTrail(sql)
  try {
    const organizations = await selectOrganizations(await allOrganizations(sql), option(args, '--org'))
    const outcomes = await archiveAuditTrail(serverRetentionDeps({ sql, audit, keys, keyEncryptionKey, config }), before, organizations)
    for (const outcome of outcomes) {
      if (outcome.outcome === 'archived') console.log(`${outcome.org}: ${outcome.events} events archived to ${outcome.file} and pruned (seq ${outcome.first_seq} to ${outcome.last_seq})`)
      else console.log(`${outcome.org}: ${outcome.outcome === 'nothing' ? 'nothing to archive' : outcome.outcome === 'locked' ? 'skipped: another run holds its retention lock' : 'skipped: no signing key can be opened (KEY_ENCRYPTION_KEY)'}`)
    }
    return 0
  } finally {
    await audit.flush()
    await close()
  }
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof ConfigError) console.error(`audit:archive: ${error.message}`)
  else console.error(`audit:archive: ${(error as Error).message ?? String(error)}`)
  process.exitCode = 2
})
