import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Sql } from '../../src/database.js'
import { newId } from '../../src/ids.js'
import { keyEvents } from './repository.js'
import type { SigningKeys } from '../infra/keys.js'

/** Every kind of event the trail records, as a list the query API validates against. */
export const AUDIT_EVENT_TYPES = [
  'agent.created', 'agent.updated', 'agent.suspended', 'agent.reactivated', 'agent.decommissioned',
  'credential.created', 'credential.revoked',
  'token.issued', 'token.revoked',
  'auth.failed', 'authz.denied',
  'key.current', 'key.previous_published'
] as const

/** Every kind of event the trail records. */
export type AuditEventType = typeof AUDIT_EVENT_TYPES[number]

/** Who acted, from where, in which request. */
export interface AuditActor {
  /** The authenticated agent's client_id (or agent id), or 'anonymous'. */
  actor: string
  ip?: string | null
  requestId?: string | null
}

/** One security-relevant act. `data` never holds a secret or a token. */
export interface AuditEvent extends AuditActor {
  type: AuditEventType
  /** The agent the event is about, when there is one (a UUID). */
  agentId?: string | null
  data?: Record<string, unknown>
}

/** A row as the chain stores it. */
export interface StoredAuditEvent {
  seq: string
  id: string
  occurred_at: Date
  type: string
  agent_id: string | null
  actor: string
  ip: string | null
  request_id: string | null
  data: Record<string, unknown>
  prev_hash: string
  hash: string
}

export interface AuditTrail {
  /**
   * Records events; resolves once they are committed, rejects when their batch could not be. The events of one
   * call commit together, in the order given.
   */
  record(...events: AuditEvent[]): Promise<void>
  /**
   * Runs `decide` inside the chain lock and records the events it returns in the same transaction: for events
   * that must be recorded at most once however many replicas try at the same time (key material at start-up).
   */
  recordUnderLock(decide: (tx: Sql) => Promise<AuditEvent[]>): Promise<void>
  /** Committed group-commit transactions and the events they held, since start (for tests and metrics). */
  readonly stats: { batches: number, events: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditTrail
  }
}

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

// Serializes writers across replicas, so the chain has one order.
const AUDIT_CHAIN_LOCK_KEY = 7_331_001
// 11 parameters a row: 500 rows stay far below PostgreSQL's 65,535 bind parameters and keep a transaction short.
const MAX_BATCH_EVENTS = 500
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
function storable (event: AuditEvent): Omit<StoredAuditEvent, 'seq' | 'id' | 'occurred_at' | 'prev_hash' | 'hash'> {
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

type Storable = ReturnType<typeof storable>

/**
 * Appends events to the chain in one transaction holding the chain lock: one multi-row insert. occurred_at is the
 * database's clock at commit, to the millisecond, and never earlier than the previous event's, so it rises with seq
 * whichever replica writes (the query API relies on that to turn a time range into a seq range).
 */
async function appendUnderLock (sql: Sql, decide: Storable[] | ((tx: Sql) => Promise<Storable[]>)): Promise<number> {
  return await sql.begin(async (tx) => {
    type Head = Array<{ seq: string | null, hash: string | null, occurred_at: Date | null, now: Date }>
    const lock = tx`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY})`
    // The head of the chain is read by a statement of its own, after the lock is held, so its snapshot sees the
    // last batch committed by any replica. With the events known up front both statements go out pipelined.
    const readHead = (): ReturnType<typeof tx<Head>> => tx<Head>`
      select last.seq, last.hash, last.occurred_at, date_trunc('milliseconds', clock_timestamp()) as now
      from (select 1) as one
      left join (select seq, hash, occurred_at from audit_events order by seq desc limit 1) as last on true`
    let events: Storable[]
    let headRows: Head
    if (Array.isArray(decide)) {
      events = decide
      if (events.length === 0) return 0
      ;[, headRows] = await Promise.all([lock, readHead()])
    } else {
      await lock
      events = await decide(tx as unknown as Sql)
      if (events.length === 0) return 0
      headRows = await readHead()
    }
    const [head] = headRows
    const { seq: lastSeq, hash: lastHash, occurred_at: lastAt, now } = head as NonNullable<typeof head>
    const occurredAt = lastAt !== null && lastAt > now ? lastAt : now
    let seq = BigInt(lastSeq ?? 0)
    let prevHash = lastHash ?? GENESIS_HASH
    const rows = events.map((event) => {
      seq += 1n
      const row = { ...event, seq: seq.toString(), id: newId(), prev_hash: prevHash }
      prevHash = hashEvent({ ...row, occurred_at: occurredAt })
      return { ...row, hash: prevHash }
    })
    const column = <K extends keyof typeof rows[number]>(name: K): Array<typeof rows[number][K]> => rows.map((row) => row[name])
    // One array a column: the same statement (prepared once a connection) whatever the batch size, where a
    // multi-row VALUES list would be a new statement, parsed and planned anew, for every size. The driver learns
    // the parameter is jsonb[] and serializes each element as JSON itself.
    await tx`
      insert into audit_events (seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
      select seq, id, ${occurredAt}, type, agent_id, actor, ip, request_id, data, prev_hash, hash
      from unnest(${column('seq')}::bigint[], ${column('id')}::uuid[], ${column('type')}::text[], ${column('agent_id')}::uuid[],
                  ${column('actor')}::text[], ${column('ip')}::text[], ${column('request_id')}::text[], ${column('data') as never}::jsonb[],
                  ${column('prev_hash')}::text[], ${column('hash')}::text[])
        as batch (seq, id, type, agent_id, actor, ip, request_id, data, prev_hash, hash)`
    return events.length
  })
}

/** Appends events to the chain in one transaction (no batching): for scripts and tests. */
export async function appendEvents (sql: Sql, events: AuditEvent[]): Promise<void> {
  await appendUnderLock(sql, events.map(storable))
}

interface Pending {
  events: Storable[]
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * Group commit: record() queues its events; one flush at a time takes everything queued (up to MAX_BATCH_EVENTS)
 * into one transaction. Nothing waits when idle: the first event flushes at once, and whatever arrives while a
 * flush is in flight goes in the next one, so the batch grows with the load.
 */
export class GroupCommitTrail implements AuditTrail {
  readonly stats = { batches: 0, events: 0 }
  #queue: Pending[] = []
  #flushing: Promise<void> | undefined

  constructor (private readonly sql: Sql, private readonly onBatch: (size: number) => void = () => {}) {}

  async record (...events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return
    const rows = events.map(storable)
    await new Promise<void>((resolve, reject) => {
      this.#queue.push({ events: rows, resolve, reject })
      this.#flushing ??= this.#drain()
    })
  }

  async recordUnderLock (decide: (tx: Sql) => Promise<AuditEvent[]>): Promise<void> {
    await appendUnderLock(this.sql, async (tx) => (await decide(tx)).map(storable))
  }

  /** Resolves once every event queued so far is committed or refused. */
  async flush (): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing
  }

  async #drain (): Promise<void> {
    // One turn of the event loop lets the records of the same tick join the first batch.
    await new Promise((resolve) => setImmediate(resolve))
    while (this.#queue.length > 0) {
      const batch = this.#takeBatch()
      const events = batch.flatMap((pending) => pending.events)
      try {
        await appendUnderLock(this.sql, events)
        this.stats.batches += 1
        this.stats.events += events.length
        this.onBatch(events.length)
        for (const pending of batch) pending.resolve()
      } catch (error) {
        for (const pending of batch) pending.reject(error)
      }
    }
    this.#flushing = undefined
  }

  /** The oldest queued records, whole, up to MAX_BATCH_EVENTS events (a larger single record goes alone). */
  #takeBatch (): Pending[] {
    let count = 0
    let taken = 0
    while (taken < this.#queue.length) {
      const size = (this.#queue[taken] as Pending).events.length
      if (taken > 0 && count + size > MAX_BATCH_EVENTS) break
      count += size
      taken += 1
    }
    return this.#queue.splice(0, taken)
  }
}

/** The actor, IP and request id of a request, for its audit events. */
export function actorOf (request: FastifyRequest, actor = 'anonymous'): AuditActor {
  return { actor, ip: request.ip, requestId: request.id }
}

/** The audit actor of a request that passed requireScopes: the caller's client_id. */
export function principalActor (request: FastifyRequest): AuditActor {
  return actorOf(request, request.principal?.clientId)
}

/**
 * Records key material changes seen at start-up: key.current when the current kid is not the one the trail last
 * recorded, key.previous_published for each previous kid the trail has not seen published. Decided under the chain
 * lock, so replicas starting together record each change once, and a restart with the same keys records nothing.
 */
export async function recordKeyMaterial (audit: AuditTrail, keys: SigningKeys): Promise<void> {
  const actor = { actor: 'system', ip: null, requestId: null }
  const host = hostname()
  await audit.recordUnderLock(async (tx) => {
    const seen = await keyEvents(tx)
    const lastCurrent = seen.filter((event) => event.type === 'key.current').at(-1)?.kid
    const published = new Set(seen.filter((event) => event.type === 'key.previous_published').map((event) => event.kid))
    const events: AuditEvent[] = []
    if (lastCurrent !== keys.current.kid) {
      events.push({ type: 'key.current', ...actor, data: { kid: keys.current.kid, alg: keys.current.alg, previous_kid: lastCurrent ?? null, host } })
    }
    for (const { kid, alg } of keys.byKid.values()) {
      if (kid !== keys.current.kid && !published.has(kid)) events.push({ type: 'key.previous_published', ...actor, data: { kid, alg, host } })
    }
    return events
  })
}

/** The audit trail, decorated on the root: every capability records through `app.audit.record`. */
export default fp(async (app) => {
  const trail = new GroupCommitTrail(app.sql, (size) => app.metrics.auditBatchSize.observe(size))
  app.decorate('audit', trail as AuditTrail)
  // Registered after postgres, so this runs before the connection pool ends.
  app.addHook('onClose', async () => { await trail.flush() })
  // The keys loaded first (a bad key stops the start before any connection opens); the trail records them now.
  // Start-up only, so app.keys, not a request's issuer context.
  await recordKeyMaterial(trail, app.keys)
}, { name: 'audit', dependencies: ['postgres', 'metrics', 'keys'] })

/** What a walk of the chain found: every event verified, or the first one that breaks it and why. */
export type ChainVerification =
  | { ok: true, verified: number }
  | { ok: false, verified: number, seq: string, id: string, reason: string }

/**
 * Walks the whole chain in seq order through a cursor (constant memory, whatever its length) and checks each event:
 * seq follows the previous one (a deleted row leaves a gap), prev_hash is the previous event's hash, hash is the
 * hash of the event's content, and occurred_at never goes back. Stops at the first event that breaks it.
 */
export async function verifyChain (sql: Sql, chunkSize = 1000): Promise<ChainVerification> {
  let verified = 0
  let expectedSeq = 1n
  let prevHash = GENESIS_HASH
  let prevAt = new Date(0)
  const rows = sql<StoredAuditEvent[]>`
    select seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash
    from audit_events order by seq`.cursor(chunkSize)
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
