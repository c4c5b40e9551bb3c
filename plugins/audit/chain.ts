import { createHash } from 'node:crypto'
import { inOrganization, type Queryable, type Sql, type TransactionSql } from '../../src/database.js'
import { newId } from '../../src/ids.js'
import type { AuditEvent, StoredAuditEvent } from './events.js'

/** The hash of the chain before its first event. */
export const GENESIS_HASH = '0'.repeat(64)

/** JSON with object keys sorted at every depth, so the same content always hashes the same. */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (value instanceof Date) return JSON.stringify(value.toISOString())
  // Built by concatenation: this runs for every audit event, on the path of every token.
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i])
    return `${out}]`
  }
  let out = '{'
  // Default sort order is by UTF-16 code units, as `<` compares strings.
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key]
    if (item === undefined) continue
    out += `${out.length === 1 ? '' : ','}${JSON.stringify(key)}:${canonicalJson(item)}`
  }
  return `${out}}`
}

/**
 * The hash of one event: SHA-256 over the previous event's hash, a newline, and the canonical JSON of its content
 * (seq as a decimal string, occurred_at as ISO 8601 with milliseconds). An exported NDJSON line verifies with it.
 */
export function hashEvent (event: Omit<StoredAuditEvent, 'hash' | 'seq' | 'data'> & { seq: string | number | bigint, data: unknown }): string {
  const content = canonicalJson({
    seq: String(event.seq),
    id: event.id,
    occurred_at: event.occurred_at.toISOString(),
    type: event.type,
    agent_id: event.agent_id,
    actor: event.actor,
    ip: event.ip,
    request_id: event.request_id,
    data: event.data
  })
  return createHash('sha256').update(event.prev_hash).update('\n').update(content).digest('hex')
}

// Serializes writers across replicas, so each organization's chain has one order: the lock is (this, the hash of
// the organization's id), one per organization.
const AUDIT_CHAIN_LOCK_KEY = 7_331_001
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** PostgreSQL text and jsonb refuse NUL and store lone surrogates as U+FFFD: clean both, so what is hashed is what reads back. */
function storableText (text: string): string {
  return (text as string & { toWellFormed(): string }).toWellFormed().replace(/\0/g, '\uFFFD')
}

function storableJson (value: unknown): unknown {
  if (typeof value === 'string') return storableText(value)
  if (Array.isArray(value)) return value.map(storableJson)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [storableText(key), storableJson(item)]))
  }
  return value
}

/** An event as it will be stored, minus what the chain assigns. Throws on an event that could never be stored. */
export function storable (event: AuditEvent): Omit<StoredAuditEvent, 'seq' | 'id' | 'occurred_at' | 'prev_hash' | 'hash'> {
  if (typeof event.actor !== 'string' || event.actor === '') throw new TypeError(`audit event ${event.type}: actor is required`)
  const agentId = event.agentId ?? null
  if (agentId !== null && !UUID.test(agentId)) throw new TypeError(`audit event ${event.type}: agentId must be a UUID`)
  // The JSON round trip applies toJSON, drops undefined and turns non-finite numbers into null, as jsonb would see it.
  const data = storableJson(JSON.parse(JSON.stringify(event.data ?? {}))) as Record<string, unknown>
  return {
    type: event.type,
    agent_id: agentId?.toLowerCase() ?? null,
    actor: storableText(event.actor),
    ip: event.ip == null ? null : storableText(event.ip),
    request_id: event.requestId == null ? null : storableText(event.requestId),
    data
  }
}

/** An event as the chain will store it, before the chain assigns its seq, id, time and hashes. */
export type Storable = ReturnType<typeof storable>

/** A chain's last event (all null for an empty chain) and the database clock once its lock was held. */
interface HeadRow { seq: string | null, hash: string | null, occurred_at: Date | null, now: Date }
type Head = HeadRow[]

/** Locks the chain of the transaction's organization (inOrganization). */
function lockChain (tx: Queryable) {
  return tx`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY}, hashtext(session_org_id()::text))`
}

/**
 * The head of the chain, read by a statement of its own after the lock is held, so its snapshot (READ COMMITTED:
 * one a statement) sees the last event committed by any replica.
 */
function readHead (tx: Queryable) {
  return tx<Head>`
    select last.seq, last.hash, last.occurred_at, date_trunc('milliseconds', clock_timestamp()) as now
    from (select 1) as one
    left join (select seq, hash, occurred_at from audit_events where org_id = session_org_id() order by seq desc limit 1) as last on true`
}

/**
 * Chains events after a head: seq, id, prev_hash and hash assigned. occurred_at is the database's clock when the head
 * was read (the chain lock is held from then to commit), to the millisecond, and never earlier than the previous
 * event's, so it rises with seq whichever replica writes (the query API relies on that to turn a time range into a
 * seq range).
 */
function chainAfter (head: HeadRow, events: Storable[]) {
  const { seq: lastSeq, hash: lastHash, occurred_at: lastAt, now } = head
  const occurredAt = lastAt !== null && lastAt > now ? lastAt : now
  let seq = BigInt(lastSeq ?? 0)
  let prevHash = lastHash ?? GENESIS_HASH
  const rows = events.map((event) => {
    seq += 1n
    const row = { ...event, seq: seq.toString(), id: newId(), prev_hash: prevHash }
    prevHash = hashEvent({ ...row, occurred_at: occurredAt })
    return { ...row, hash: prevHash }
  })
  return { rows, occurredAt, lastSeq: seq.toString() }
}

type ChainedRow = ReturnType<typeof chainAfter>['rows'][number]

/** One array a column of `rows`, the data as JSON text (see insertAfter). */
function columnsOf (rows: ChainedRow[]) {
  const column = <K extends keyof ChainedRow>(name: K): Array<ChainedRow[K]> => rows.map((row) => row[name])
  return {
    seq: column('seq'), id: column('id'), type: column('type'), agent_id: column('agent_id'), actor: column('actor'), ip: column('ip'),
    request_id: column('request_id'), data: rows.map((row) => JSON.stringify(row.data)), prev_hash: column('prev_hash'), hash: column('hash')
  }
}

/** Inserts events after the head, in the transaction's organization: one multi-row insert. Returns the last seq. */
async function insertAfter (tx: Queryable, headRows: Head, events: Storable[]): Promise<string> {
  const { rows, occurredAt, lastSeq } = chainAfter(headRows[0] as HeadRow, events)
  const columns = columnsOf(rows)
  // One array a column: the same statement (prepared once a connection) whatever the batch size, where a
  // multi-row VALUES list would be a new statement, parsed and planned anew, for every size. The data goes as
  // JSON text cast to jsonb: handed objects, the driver takes one with `type` and `value` members for a typed
  // parameter and stores its value instead (data { type, value: 1 } was stored as 1, and broke the chain).
  await tx`
    insert into audit_events (org_id, seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
    select session_org_id(), seq, id, ${occurredAt}, type, agent_id, actor, ip, request_id, data, prev_hash, hash
    from unnest(${columns.seq}::bigint[], ${columns.id}::uuid[], ${columns.type}::text[], ${columns.agent_id}::uuid[],
                ${columns.actor}::text[], ${columns.ip}::text[], ${columns.request_id}::text[], ${columns.data}::text[]::jsonb[],
                ${columns.prev_hash}::text[], ${columns.hash}::text[])
      as batch (seq, id, type, agent_id, actor, ip, request_id, data, prev_hash, hash)`
  return lastSeq
}

/**
 * Appends events to the chain of the transaction's organization (inOrganization), inside the caller's transaction
 * `tx` (READ COMMITTED, the default), taking the chain
 * lock: they commit or roll back with it. The lock is held until that commit, so it is taken last in the
 * transaction, after its row locks; every other holder of the chain lock takes no other lock after it, so waits
 * cannot form a cycle. Returns the seq of the last event, or undefined when there was none.
 */
export async function appendInTransaction (tx: Queryable, events: Storable[]): Promise<string | undefined> {
  if (events.length === 0) return undefined
  // The events are known up front: the lock and the head read go out pipelined, the read still after the lock.
  const [, head] = await Promise.all([lockChain(tx), readHead(tx)])
  return await insertAfter(tx, head, events)
}

/**
 * Appends events to several organizations' chains in one transaction (the group commit's batch), in two statements
 * whatever their number (sql/0017): one locks every chain and reads its head, one inserts every event, each
 * organization's rows after the transaction was switched to it (row-level security). The chains are locked in the
 * order of their organizations' ids, so two batches cannot wait on each other in a cycle. Calls `locked` once
 * every chain is locked. Returns each organization's last seq.
 */
export async function appendForOrganizations (tx: TransactionSql, eventsByOrganization: Map<string, Storable[]>, locked: () => void = () => {}): Promise<Array<[orgId: string, seq: string]>> {
  const orgIds = [...eventsByOrganization.keys()].filter((orgId) => (eventsByOrganization.get(orgId) ?? []).length > 0).sort()
  if (orgIds.length === 0) return []
  const heads = await tx<Array<{ head_org_id: string, head_seq: string | null, head_hash: string | null, head_occurred_at: Date | null, now_at: Date }>>`
    select head_org_id, head_seq, head_hash, head_occurred_at, now_at from audit_lock_chain_heads(${orgIds}::uuid[])`
  locked()
  const rowCounts: number[] = []
  // ISO text: the driver sends an array of Dates with the element's type (timestamptz), which no array cast takes.
  const rowOccurredAts: string[] = []
  const rows: ChainedRow[] = []
  const lastSeqs: Array<[orgId: string, seq: string]> = []
  for (const head of heads) {
    const chained = chainAfter({ seq: head.head_seq, hash: head.head_hash, occurred_at: head.head_occurred_at, now: head.now_at }, eventsByOrganization.get(head.head_org_id) as Storable[])
    const occurredAt = chained.occurredAt.toISOString()
    for (const row of chained.rows) {
      rows.push(row)
      rowOccurredAts.push(occurredAt)
    }
    rowCounts.push(chained.rows.length)
    lastSeqs.push([head.head_org_id, chained.lastSeq])
  }
  const columns = columnsOf(rows)
  await tx`
    select audit_insert_batch(${lastSeqs.map(([orgId]) => orgId)}::uuid[], ${rowCounts}::int[], ${columns.seq}::bigint[], ${columns.id}::uuid[],
      ${rowOccurredAts}::timestamptz[], ${columns.type}::text[], ${columns.agent_id}::uuid[], ${columns.actor}::text[], ${columns.ip}::text[],
      ${columns.request_id}::text[], ${columns.data}::text[]::jsonb[], ${columns.prev_hash}::text[], ${columns.hash}::text[])`
  return lastSeqs
}

/**
 * Runs `decide` inside a transaction holding the chain lock and appends the events it returns in the same
 * transaction. Returns the seq of the last event, or undefined when there was none.
 */
export async function appendUnderLock (sql: Sql, orgId: string, decide: (tx: Sql) => Promise<Storable[]>): Promise<string | undefined> {
  return await inOrganization(sql, orgId, async (tx) => {
    await lockChain(tx)
    const events = await decide(tx as unknown as Sql)
    if (events.length === 0) return undefined
    return await insertAfter(tx, await readHead(tx), events)
  })
}

/**
 * Resolves once every transaction that held the chain lock when it was called has ended (committed or rolled
 * back): a shared lock waits for the exclusive one. It holds no lock afterwards and takes no other.
 */
export async function chainWritersDone (sql: Sql, orgId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock_shared(${AUDIT_CHAIN_LOCK_KEY}, hashtext(${orgId}::text))`
}

/** What a walk of the chain found: every event verified, or the first one that breaks it and why. */
export type ChainVerification =
  | { ok: true, verified: number, from?: ChainStart }
  | { ok: false, verified: number, seq: string, id: string, reason: string, from?: ChainStart }

/** Where the table's part of a chain starts: after the last checkpoint of a prune (sql/0016), else at seq 1. */
export interface ChainStart { seq: string, hash: string }

/**
 * Walks what the table holds of one organization's chain in seq order through a cursor (constant memory, whatever
 * its length) and checks each event: seq follows the previous one (a deleted row leaves a gap), prev_hash is the
 * previous event's hash, hash is the hash of the event's content, and occurred_at never goes back. The walk starts
 * after the last checkpoint a prune left (its seq and hash), or at seq 1 from the genesis hash; whether that
 * checkpoint's signature holds is verifyCheckpoints' to say. Stops at the first event that breaks it.
 */
export async function verifyChain (sql: Sql, orgId: string, chunkSize = 1000): Promise<ChainVerification> {
  return await inOrganization(sql, orgId, async (tx) => {
    const [checkpoint] = await tx<ChainStart[]>`
      select seq::text, hash from audit_checkpoints where org_id = session_org_id() order by audit_checkpoints.seq desc limit 1`
    const result = await verifyRows(tx<StoredAuditEvent[]>`
      select seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash
      from audit_events where org_id = session_org_id() order by seq`.cursor(chunkSize), checkpoint)
    return checkpoint === undefined ? result : { ...result, from: checkpoint }
  })
}

async function verifyRows (rows: AsyncIterable<StoredAuditEvent[]>, start?: ChainStart): Promise<ChainVerification> {
  let verified = 0
  let expectedSeq = BigInt(start?.seq ?? '0') + 1n
  let prevHash = start?.hash ?? GENESIS_HASH
  let prevAt = new Date(0)
  for await (const chunk of rows) {
    for (const row of chunk) {
      const broken = (reason: string): ChainVerification => ({ ok: false, verified, seq: row.seq, id: row.id, reason })
      if (BigInt(row.seq) !== expectedSeq) return broken(`expected seq ${expectedSeq}: the events in between are missing`)
      if (row.prev_hash !== prevHash) return broken(`prev_hash is not the hash of event seq ${expectedSeq - 1n}: an earlier event was altered or replaced`)
      if (hashEvent(row) !== row.hash) return broken('hash does not match the content: the event was altered')
      if (row.occurred_at < prevAt) return broken('occurred_at is earlier than the previous event\'s')
      verified += 1
      expectedSeq += 1n
      prevHash = row.hash
      prevAt = row.occurred_at
    }
  }
  return { ok: true, verified }
}
