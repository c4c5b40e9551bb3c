import fp from 'fastify-plugin'
import { inOrganization } from '../../../src/database.js'
import { runPeriodically } from '../../../src/periodic.js'
import type { AuditEvent } from '../../audit/public.js'
import { liveOrganizations } from '../../organizations/public.js'
import type { Deps } from '../deps.js'
import { markExpired, markExpiring, type ExpiryRow } from './repository.js'

/** What one pass of the expiry scan recorded. */
export interface ExpiryScan { expiring: number, expired: number }

// Hourly: a warning CREDENTIAL_EXPIRY_WARNING_DAYS ahead is at most an hour late; the first pass a minute after start.
const SCAN_INTERVAL_MS = 3_600_000
const FIRST_SCAN_DELAY_MS = 60_000

function eventOf (type: 'credential.expiring' | 'credential.expired', orgId: string, row: ExpiryRow): AuditEvent {
  return {
    type,
    orgId,
    actor: 'system',
    agentId: row.agent_id,
    data: { credential_id: row.id, credential_type: row.type, expires_at: row.expires_at.toISOString() }
  }
}

/**
 * One pass over every organization: records credential.expiring for each live credential that expires within
 * CREDENTIAL_EXPIRY_WARNING_DAYS, and credential.expired for each that has expired, once per credential, in the
 * transaction that marks it (webhooks deliver them like any audit event). Replicas may run it together: a credential
 * is marked by one of them only. Exported so tests and operators run a pass without waiting for the timer.
 */
export async function scanCredentialExpiry (deps: Pick<Deps, 'sql' | 'audit' | 'config'>): Promise<ExpiryScan> {
  const warningSeconds = Math.round(deps.config.compliance.credentialExpiryWarningDays * 86_400)
  const total: ExpiryScan = { expiring: 0, expired: 0 }
  for (const organization of await liveOrganizations(deps.sql)) {
    await inOrganization(deps.sql, organization.id, async (tx) => {
      const expired = await markExpired(tx)
      const expiring = await markExpiring(tx, warningSeconds)
      await deps.audit.recordIn(tx,
        ...expiring.map((row) => eventOf('credential.expiring', organization.id, row)),
        ...expired.map((row) => eventOf('credential.expired', organization.id, row)))
      total.expiring += expiring.length
      total.expired += expired.length
    })
  }
  return total
}

/** The hourly expiry scan of this replica, stopped when the app closes. */
export default fp(async (app) => {
  const run = (): void => {
    scanCredentialExpiry(app)
      .then((scan) => { if (scan.expiring + scan.expired > 0) app.log.info(scan, 'credential expiry scan recorded events') })
      .catch((error: Error) => { app.log.warn({ err: { message: error.message } }, 'credential expiry scan failed') })
  }
  runPeriodically(app, run, { firstDelayMs: FIRST_SCAN_DELAY_MS, intervalMs: SCAN_INTERVAL_MS })
}, { name: 'credential-expiry-scan', dependencies: ['postgres', 'audit'] })
