import type { Queryable, Queryable as Sql } from '../../src/database.js'
import type { StoredAuditEvent } from './events.js'

/** Which events a page or an export covers. since is inclusive, until exclusive. */
export interface AuditFilter {
  types?: string[]
  agentId?: string
  actor?: string
  since?: Date
  until?: Date
  /** Keyset: only events before this seq (the previous page's last). */
  beforeSeq?: string
}

const COLUMNS = ['seq', 'id', 'occurred_at', 'type', 'agent_id', 'actor', 'ip', 'request_id', 'data', 'prev_hash', 'hash']
const NO_EVENT_YET = '9223372036854775807'

/**
 * The seq of the first event at or after `at` (or past every event). occurred_at rises with seq (the appender
 * guarantees it and audit:verify checks it), so a time range is a seq range: the filtered query then walks one
 * index in seq order, whatever else it filters on.
 */
function firstSeqAtOrAfter (sql: Sql, at: Date) {
  return sql`coalesce((select seq from audit_events where org_id = session_org_id() and occurred_at >= ${at} order by occurred_at, seq limit 1), ${NO_EVENT_YET}::bigint)`
}

function conditions (sql: Sql, filter: AuditFilter) {
  const { types, agentId, actor, since, until, beforeSeq } = filter
  return sql`
    ${types === undefined ? sql`` : sql`and type in ${sql(types)}`}
    ${agentId === undefined ? sql`` : sql`and agent_id = ${agentId}`}
    ${actor === undefined ? sql`` : sql`and actor = ${actor}`}
    ${since === undefined ? sql`` : sql`and seq >= ${firstSeqAtOrAfter(sql, since)}`}
    ${until === undefined ? sql`` : sql`and seq < ${firstSeqAtOrAfter(sql, until)}`}
    ${beforeSeq === undefined ? sql`` : sql`and seq < ${beforeSeq}`}`
}

/** Events matching the filter, newest (highest seq) first. */
export async function listEvents (sql: Sql, filter: AuditFilter, limit: number): Promise<StoredAuditEvent[]> {
  return await sql<StoredAuditEvent[]>`
    select ${sql(COLUMNS)} from audit_events
    where org_id = session_org_id() ${conditions(sql, filter)}
    order by seq desc
    limit ${limit}`
}

/** Events in a time range in chain order, fetched `chunkSize` rows at a time through a server-side cursor. */
export function streamEvents (sql: Sql, filter: Pick<AuditFilter, 'since' | 'until'>, chunkSize: number): AsyncIterable<StoredAuditEvent[]> {
  return sql<StoredAuditEvent[]>`
    select ${sql(COLUMNS)} from audit_events
    where org_id = session_org_id() ${conditions(sql, filter)}
    order by seq`.cursor(chunkSize)
}

/** Every key material event of the trail, oldest first: one per start-up that saw a change, so few. */
export async function keyEvents (sql: Sql): Promise<Array<{ type: 'key.current' | 'key.previous_published', kid: string | null }>> {
  return await sql`
    select type, data->>'kid' as kid from audit_events
    where org_id = session_org_id() and type in ('key.current', 'key.previous_published')
    order by seq`
}

/**
 * Committed events after `afterSeq` (exclusive; '0' for the first), in chain order, at most `limit`: how a
 * subscriber reads the trail. seq has no gaps, so a subscriber that keeps the last seq it read misses none.
 */
export async function readChain (sql: Queryable, { afterSeq, limit }: { afterSeq: string, limit: number }): Promise<StoredAuditEvent[]> {
  return await sql<StoredAuditEvent[]>`
    select ${sql(COLUMNS)} from audit_events
    where org_id = session_org_id() and seq > ${afterSeq}
    order by seq
    limit ${limit}`
}

/**
 * The seq of the last committed event of the transaction's organization ('0' before the first). A subscriber starting at it receives every event
 * committed after: an event still in flight commits with a higher seq (the chain lock orders them).
 */
export async function lastSeq (sql: Queryable): Promise<string> {
  const [row] = await sql<Array<{ seq: string }>>`select coalesce(max(seq), 0)::text as seq from audit_events where org_id = session_org_id()`
  return row?.seq ?? '0'
}
