import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import fp from 'fastify-plugin'
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose'
import { DEFAULT_ORG_ID, inOrganization, type Queryable, type Sql } from '../../src/database.js'
import { runPeriodically } from '../../src/periodic.js'
import type { PublicSigningKey, SigningKeys } from '../infra/keys.js'
import { liveOrganizations, organizationSigningKeys, organizationVerificationKeys, type OrganizationRef } from '../organizations/public.js'
import { GENESIS_HASH, hashEvent } from './chain.js'
import type { StoredAuditEvent } from './events.js'
import { toItem } from './queries.js'
import type { AuditTrail } from './trail.js'

/** A row of audit_checkpoints. */
export interface CheckpointRow {
  seq: string
  hash: string
  first_seq: string
  pruned_at: Date
  archive_file: string
  archive_sha256: string
  jws: string
}

/** What a checkpoint's JWS signs. */
export interface CheckpointPayload {
  org_id: string
  iss: string
  seq: string
  hash: string
  first_seq: string
  file: string
  sha256: string
  pruned_at: string
}

/** The JWS typ of a checkpoint: never confused with a token. */
export const CHECKPOINT_TYP = 'audit-checkpoint+jwt'

// One retention run per organization at a time, whichever replica or command starts it.
const RETENTION_LOCK_KEY = 7_331_002
const ARCHIVE_CHUNK_ROWS = 500
// Daily; the first run a few minutes after start, so a rolling restart does not run it on every replica at once.
const RETENTION_INTERVAL_MS = 86_400_000
const FIRST_RUN_DELAY_MS = 300_000

/** Every checkpoint of the transaction's organization, oldest first. */
export async function checkpointsOf (sql: Queryable): Promise<CheckpointRow[]> {
  return await sql<CheckpointRow[]>`
    select seq::text, hash, first_seq::text, pruned_at, archive_file, archive_sha256, jws
    from audit_checkpoints where org_id = current_org_id() order by audit_checkpoints.seq`
}

/** A zero-padded seq, so file names sort in chain order. */
const padded = (seq: bigint): string => seq.toString().padStart(19, '0')
const ARCHIVE_FILE = /^(\d{19})-(\d{19})\.ndjson$/

/** The archive directory of one organization: `AUDIT_ARCHIVE_DIR/<org id>`. */
export function organizationArchiveDir (archiveDir: string, orgId: string): string {
  return join(archiveDir, orgId)
}

/** What archiving needs: the database, the trail (for audit.pruned), where files go, and each issuer's signing key. */
export interface RetentionDeps {
  sql: Sql
  audit: AuditTrail
  archiveDir: string
  /** The issuer identifier and current signing key of an organization, or undefined when it cannot sign. */
  signerOf(organization: OrganizationRef): Promise<{ issuer: string, keys: SigningKeys } | undefined>
}

/** What one organization's run did. */
export type ArchiveOutcome =
  | { org: string, outcome: 'archived', events: number, first_seq: string, last_seq: string, file: string, sha256: string }
  | { org: string, outcome: 'nothing' | 'locked' | 'no_signing_key' }

async function fsyncDirectory (directory: string): Promise<void> {
  const handle = await open(directory, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Writes the events `firstSeq`..`lastSeq` to `path` as NDJSON (the export's lines), through a temporary file that is
 * fsynced, renamed into place, and its directory fsynced: once this resolves the file is on disk. Returns the file's
 * SHA-256, the last event's hash and how many events it holds.
 */
async function writeArchive (tx: Queryable, directory: string, name: string, firstSeq: bigint, lastSeq: bigint): Promise<{ sha256: string, hash: string, events: number }> {
  const temporary = join(directory, `.${name}.partial`)
  const handle = await open(temporary, 'w', 0o600)
  const digest = createHash('sha256')
  let hash = ''
  let events = 0
  try {
    const rows = tx<StoredAuditEvent[]>`
      select seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash from audit_events
      where org_id = current_org_id() and seq >= ${firstSeq.toString()} and seq <= ${lastSeq.toString()}
      order by seq`.cursor(ARCHIVE_CHUNK_ROWS)
    for await (const chunk of rows) {
      const text = chunk.map((row) => `${JSON.stringify(toItem(row))}\n`).join('')
      digest.update(text)
      await handle.write(text)
      events += chunk.length
      hash = (chunk.at(-1) as StoredAuditEvent).hash
    }
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temporary, join(directory, name))
  await fsyncDirectory(directory)
  return { sha256: digest.digest('hex'), hash, events }
}

/** Removes files a failed run left: those not confirmed by a checkpoint (their first seq is after the last one). */
async function removeUnconfirmed (directory: string, firstSeq: bigint): Promise<void> {
  for (const name of await readdir(directory)) {
    const match = ARCHIVE_FILE.exec(name)
    if (name.endsWith('.partial') || (match !== null && BigInt(match[1] as string) >= firstSeq)) await rm(join(directory, name), { force: true })
  }
}

/** Signs a checkpoint as a compact JWS with the issuer's current key. */
export async function signCheckpoint (keys: SigningKeys, payload: CheckpointPayload): Promise<string> {
  return await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: keys.current.alg, kid: keys.current.kid, typ: CHECKPOINT_TYP })
    .sign(keys.current.privateKey)
}

/**
 * Archives, then prunes, one organization's events older than `before` (never the chain's head), in one
 * transaction holding the organization's retention lock (another replica or command meanwhile skips it): the NDJSON
 * file is written and fsynced, the checkpoint signed, then audit_prune() records the checkpoint and deletes the
 * events, and audit.pruned records the prune. A failure prunes nothing; the next run rewrites the file.
 */
export async function archiveOrganization (deps: RetentionDeps, organization: OrganizationRef, before: Date): Promise<ArchiveOutcome> {
  const org = organization.slug
  const signer = await deps.signerOf(organization)
  return await inOrganization(deps.sql, organization.id, async (tx): Promise<ArchiveOutcome> => {
    const [lock] = await tx<Array<{ locked: boolean }>>`select pg_try_advisory_xact_lock(${RETENTION_LOCK_KEY}, hashtext(${organization.id}::text)) as locked`
    if (lock?.locked !== true) return { org, outcome: 'locked' }
    const last = (await checkpointsOf(tx)).at(-1)
    const firstSeq = BigInt(last?.seq ?? '0') + 1n
    const [range] = await tx<Array<{ through: string | null }>>`
      select max(seq)::text as through from audit_events
      where org_id = current_org_id() and seq >= ${firstSeq.toString()} and occurred_at < ${before}
        and seq < (select max(seq) from audit_events where org_id = current_org_id())`
    if (range?.through == null) return { org, outcome: 'nothing' }
    if (signer === undefined) return { org, outcome: 'no_signing_key' }
    const lastSeq = BigInt(range.through)
    const directory = organizationArchiveDir(deps.archiveDir, organization.id)
    await mkdir(directory, { recursive: true, mode: 0o700 })
    await removeUnconfirmed(directory, firstSeq)
    const name = `${padded(firstSeq)}-${padded(lastSeq)}.ndjson`
    const file = `${organization.id}/${name}`
    const written = await writeArchive(tx, directory, name, firstSeq, lastSeq)
    const [now] = await tx<Array<{ now: Date }>>`select now()`
    const payload: CheckpointPayload = {
      org_id: organization.id,
      iss: signer.issuer,
      seq: lastSeq.toString(),
      hash: written.hash,
      first_seq: firstSeq.toString(),
      file,
      sha256: written.sha256,
      pruned_at: (now as { now: Date }).now.toISOString()
    }
    const jws = await signCheckpoint(signer.keys, payload)
    await tx`select audit_prune(${lastSeq.toString()}, ${written.hash}, ${firstSeq.toString()}, ${file}, ${written.sha256}, ${jws}, ${before})`
    await deps.audit.recordIn(tx, {
      type: 'audit.pruned',
      orgId: organization.id,
      actor: 'system',
      data: { first_seq: payload.first_seq, last_seq: payload.seq, events: written.events, before: before.toISOString(), archive_file: file, archive_sha256: written.sha256 }
    })
    return { org, outcome: 'archived', events: written.events, first_seq: payload.first_seq, last_seq: payload.seq, file, sha256: written.sha256 }
  })
}

/** Archives and prunes every live organization (or the one given), each in its own transaction. */
export async function archiveAuditTrail (deps: RetentionDeps, before: Date, organizations?: OrganizationRef[]): Promise<ArchiveOutcome[]> {
  const outcomes: ArchiveOutcome[] = []
  for (const organization of organizations ?? await liveOrganizations(deps.sql)) outcomes.push(await archiveOrganization(deps, organization, before))
  return outcomes
}

/** What verifying an organization's checkpoints found. */
export type CheckpointVerification = { ok: true, checkpoints: number } | { ok: false, seq: string, reason: string }

/**
 * Verifies the signature of each checkpoint against the issuer's keys (retired ones of an organization included) and
 * that what it signs is what the row says.
 */
export async function verifyCheckpoints (checkpoints: CheckpointRow[], orgId: string, keys: Map<string, PublicSigningKey>): Promise<CheckpointVerification> {
  for (const checkpoint of checkpoints) {
    const broken = (reason: string): CheckpointVerification => ({ ok: false, seq: checkpoint.seq, reason })
    let kid: string | undefined
    try {
      kid = decodeProtectedHeader(checkpoint.jws).kid
    } catch {
      return broken('its JWS cannot be parsed')
    }
    const key = kid === undefined ? undefined : keys.get(kid)
    if (key === undefined) return broken(`it is signed by kid ${kid ?? '(none)'}, which is not a key of this issuer`)
    let payload: CheckpointPayload
    try {
      const verified = await compactVerify(checkpoint.jws, key.key, { algorithms: [key.alg] })
      if (verified.protectedHeader.typ !== CHECKPOINT_TYP) return broken(`its JWS typ is not ${CHECKPOINT_TYP}`)
      payload = JSON.parse(new TextDecoder().decode(verified.payload)) as CheckpointPayload
    } catch {
      return broken('its signature does not verify')
    }
    if (payload.org_id !== orgId || payload.seq !== checkpoint.seq || payload.hash !== checkpoint.hash || payload.first_seq !== checkpoint.first_seq ||
        payload.file !== checkpoint.archive_file || payload.sha256 !== checkpoint.archive_sha256) {
      return broken('the row does not match what its JWS signs')
    }
  }
  return { ok: true, checkpoints: checkpoints.length }
}

/** What verifying an organization's archive files found. */
export type ArchiveVerification = { ok: true, files: number, events: number } | { ok: false, reason: string }

/**
 * Verifies an organization's archive files in AUDIT_ARCHIVE_DIR/<org id>: their lines hash into one chain from seq
 * 1, each file continues the previous one, each is the file a checkpoint names (same name, SHA-256, first and last
 * seq, last hash), and every checkpoint has its file. With the table verified from the last checkpoint, the whole
 * history is then verified: archive, checkpoints, table.
 */
export async function verifyArchive (archiveDir: string, orgId: string, checkpoints: CheckpointRow[]): Promise<ArchiveVerification> {
  const directory = organizationArchiveDir(archiveDir, orgId)
  let names: string[]
  try {
    names = (await readdir(directory)).filter((name) => ARCHIVE_FILE.test(name)).sort()
  } catch {
    names = []
  }
  const byFile = new Map(checkpoints.map((checkpoint) => [checkpoint.archive_file, checkpoint]))
  let expectedSeq = 1n
  let prevHash = GENESIS_HASH
  let prevAt = new Date(0)
  let events = 0
  const seen = new Set<string>()
  for (const name of names) {
    const file = `${orgId}/${name}`
    const checkpoint = byFile.get(file)
    if (checkpoint === undefined) return { ok: false, reason: `${file} is named by no checkpoint` }
    if (BigInt(checkpoint.first_seq) !== expectedSeq) return { ok: false, reason: `${file} starts at seq ${checkpoint.first_seq}, expected ${expectedSeq}: a file before it is missing` }
    const digest = createHash('sha256')
    const input = createReadStream(join(directory, name))
    input.on('data', (chunk) => digest.update(chunk))
    let line = 0
    for await (const text of createInterface({ input, crlfDelay: Infinity })) {
      line += 1
      let item: Omit<StoredAuditEvent, 'occurred_at'> & { occurred_at: string }
      try {
        item = JSON.parse(text)
      } catch {
        return { ok: false, reason: `${file} line ${line} is not JSON` }
      }
      const at = new Date(item.occurred_at)
      const where = `${file} line ${line} (seq ${String(item.seq)})`
      if (BigInt(item.seq) !== expectedSeq) return { ok: false, reason: `${where}: expected seq ${expectedSeq}` }
      if (item.prev_hash !== prevHash) return { ok: false, reason: `${where}: prev_hash is not the previous event's hash` }
      if (Number.isNaN(at.getTime()) || hashEvent({ ...item, occurred_at: at }) !== item.hash) return { ok: false, reason: `${where}: hash does not match the content: the line was altered` }
      if (at < prevAt) return { ok: false, reason: `${where}: occurred_at is earlier than the previous event's` }
      expectedSeq += 1n
      prevHash = item.hash
      prevAt = at
      events += 1
    }
    if (digest.digest('hex') !== checkpoint.archive_sha256) return { ok: false, reason: `${file}: its SHA-256 is not the one its checkpoint signs` }
    if (BigInt(checkpoint.seq) !== expectedSeq - 1n || checkpoint.hash !== prevHash) return { ok: false, reason: `${file} does not end at its checkpoint (seq ${checkpoint.seq})` }
    seen.add(file)
  }
  const missing = checkpoints.find((checkpoint) => !seen.has(checkpoint.archive_file))
  if (missing !== undefined) return { ok: false, reason: `${missing.archive_file} (checkpoint seq ${missing.seq}) is missing from the archive` }
  return { ok: true, files: names.length, events }
}

/** The deps of archiving in the server: its database, trail and keys; AUDIT_ARCHIVE_DIR. */
export function serverRetentionDeps (app: { sql: Sql, audit: AuditTrail, keys: SigningKeys, keyEncryptionKey: Buffer | undefined, config: { issuer: string, compliance: { auditArchiveDir: string } } }): RetentionDeps {
  return {
    sql: app.sql,
    audit: app.audit,
    archiveDir: app.config.compliance.auditArchiveDir,
    signerOf: async (organization) => {
      const keys = await organizationSigningKeys(app.sql, app.keyEncryptionKey, app.keys, organization.id)
      if (keys === undefined) return undefined
      return { issuer: organization.id === DEFAULT_ORG_ID ? app.config.issuer : `${app.config.issuer}/o/${organization.slug}`, keys }
    }
  }
}

/** The keys an organization's checkpoints verify against. */
export async function checkpointKeys (sql: Sql, defaultKeys: Pick<SigningKeys, 'byKid'>, orgId: string): Promise<Map<string, PublicSigningKey>> {
  return await organizationVerificationKeys(sql, defaultKeys, orgId)
}

/**
 * The daily retention job (AUDIT_RETENTION_DAYS set): every replica runs it, each organization is archived by one
 * of them at a time (the retention lock), the others skip it.
 */
export default fp(async (app) => {
  const days = app.config.compliance.auditRetentionDays
  if (days === undefined) return
  const deps = serverRetentionDeps(app)
  const run = (): void => {
    archiveAuditTrail(deps, new Date(Date.now() - days * 86_400_000))
      .then((outcomes) => {
        for (const outcome of outcomes) {
          if (outcome.outcome === 'archived') app.log.info(outcome, 'audit events archived and pruned')
          else if (outcome.outcome === 'no_signing_key') app.log.warn({ org: outcome.org }, 'audit events not pruned: the organization has no signing key that can be opened')
        }
      })
      .catch((error: Error) => { app.log.warn({ err: { message: error.message } }, 'audit retention run failed; nothing was pruned by the failed step') })
  }
  runPeriodically(app, run, { firstDelayMs: FIRST_RUN_DELAY_MS, intervalMs: RETENTION_INTERVAL_MS })
}, { name: 'audit-retention', dependencies: ['postgres', 'audit', 'keys'] })
