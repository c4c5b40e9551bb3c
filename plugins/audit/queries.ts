import { PassThrough, type Readable } from 'node:stream'
import type { AuditEventItem, AuditEventQuery, AuditExportQuery } from '../../schemas/audit.js'
import { inOrganization, type Sql } from '../../src/database.js'
import { badRequest } from '../../src/errors.js'
import { AUDIT_EVENT_TYPES, type StoredAuditEvent } from './events.js'
import { listEvents, streamEvents, type AuditFilter } from './repository.js'

// Rows an export holds in memory at a time, whatever its range.
const EXPORT_CHUNK_ROWS = 500
const KNOWN_TYPES = new Set<string>(AUDIT_EVENT_TYPES)
const CURSOR = /^s(\d{1,19})$/
// audit_events.seq is a bigint.
const MAX_SEQ = 2n ** 63n - 1n

/** The API shape of a stored event. */
export function toItem (row: StoredAuditEvent): AuditEventItem {
  return {
    id: row.id,
    seq: Number(row.seq),
    occurred_at: row.occurred_at.toISOString(),
    type: row.type,
    agent_id: row.agent_id,
    actor: row.actor,
    ip: row.ip,
    request_id: row.request_id,
    data: row.data,
    prev_hash: row.prev_hash,
    hash: row.hash
  }
}

function encodeCursor (seq: string): string {
  return Buffer.from(`s${seq}`).toString('base64url')
}

function decodeCursor (cursor: string): string {
  const match = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('latin1'))
  // 19 digits reach past bigint: such a seq was never issued, and PostgreSQL would refuse to compare with it.
  if (match === null || BigInt(match[1] as string) > MAX_SEQ) {
    throw badRequest('cursor is not one this API returned', [{ location: 'querystring/cursor', message: 'must be the next_cursor of a previous page' }])
  }
  return match[1] as string
}

function rangeOf (query: AuditExportQuery): Pick<AuditFilter, 'since' | 'until'> {
  const since = query.since === undefined ? undefined : new Date(query.since)
  const until = query.until === undefined ? undefined : new Date(query.until)
  if (since !== undefined && until !== undefined && since > until) {
    throw badRequest('since must not be later than until', [{ location: 'querystring/since', message: 'must not be later than until' }])
  }
  return { since, until }
}

function typesOf (values: string[] | undefined): string[] | undefined {
  if (values === undefined) return undefined
  const types = [...new Set(values.flatMap((value) => value.split(',')))]
  const unknown = types.filter((type) => !KNOWN_TYPES.has(type))
  if (unknown.length > 0) {
    throw badRequest(`unknown event type ${unknown.join(', ')}`, [{ location: 'querystring/type', message: `must be among ${AUDIT_EVENT_TYPES.join(', ')}` }])
  }
  return types
}

/** One page of events, newest first, with the cursor of the next page (keyset on seq: each event once). */
export async function listPage (sql: Sql, orgId: string, query: AuditEventQuery): Promise<{ items: AuditEventItem[], next_cursor: string | null }> {
  const filter: AuditFilter = {
    ...rangeOf(query),
    types: typesOf(query.type),
    agentId: query.agent_id,
    actor: query.actor,
    beforeSeq: query.cursor === undefined ? undefined : decodeCursor(query.cursor)
  }
  const rows = await inOrganization(sql, orgId, async (tx) => await listEvents(tx, filter, query.limit + 1))
  const page = rows.slice(0, query.limit)
  const last = page.at(-1)
  return { items: page.map(toItem), next_cursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.seq) : null }
}

/** Resolves when `out` can take more, or was closed (the client went away); leaves no listener behind. */
async function drainedOrClosed (out: PassThrough): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = (): void => { out.off('drain', done); out.off('close', done); resolve() }
    out.on('drain', done)
    out.on('close', done)
  })
}

/**
 * An organization's events of a time range as NDJSON, in chain order, one line per event with its hashes: pulled
 * from a server-side cursor, inside the organization's transaction, only as fast as the client reads, so memory
 * stays flat whatever the range. The first chunk is read before answering, so a database that fails at once gets a
 * proper error status rather than a cut-off 200.
 */
export async function exportStream (sql: Sql, orgId: string, query: AuditExportQuery): Promise<Readable> {
  const range = rangeOf(query)
  const out = new PassThrough()
  let firstRead = (): void => {}
  const started = new Promise<void>((resolve) => { firstRead = resolve })
  const written = inOrganization(sql, orgId, async (tx) => {
    for await (const chunk of streamEvents(tx, range, EXPORT_CHUNK_ROWS)) {
      firstRead()
      // A client that hangs up early ends the loop, which closes the server-side cursor and the transaction.
      if (out.destroyed) break
      if (!out.write(chunk.map((row) => `${JSON.stringify(toItem(row))}\n`).join(''))) {
        await drainedOrClosed(out)
      }
    }
  })
  await Promise.race([started, written])
  written.then(() => out.end(), (error: Error) => out.destroy(error))
  return out
}
