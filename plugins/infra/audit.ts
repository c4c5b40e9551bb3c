import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Sql } from '../../src/database.js'
import { newId } from '../../src/ids.js'

/** Every kind of event the trail records. */
export type AuditEventType =
  | 'agent.created' | 'agent.updated' | 'agent.suspended' | 'agent.reactivated' | 'agent.decommissioned'
  | 'credential.created' | 'credential.revoked'
  | 'token.issued' | 'token.revoked'
  | 'auth.failed'
  | 'key.current' | 'key.previous_published'

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
  /** The agent the event is about, when there is one. */
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
  /** Records events; resolves once they are committed. */
  record(...events: AuditEvent[]): Promise<void>
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
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
}

/** The hash of one event: its canonical content and the previous event's hash. */
export function hashEvent (event: Omit<StoredAuditEvent, 'hash'>): string {
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

/** Appends events to the chain in one transaction. */
export async function appendEvents (sql: Sql, events: AuditEvent[]): Promise<void> {
  if (events.length === 0) return
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK_KEY})`
    const [last] = await tx<Array<{ seq: string, hash: string }>>`select seq, hash from audit_events order by seq desc limit 1`
    let seq = BigInt(last?.seq ?? 0)
    let prevHash = last?.hash ?? GENESIS_HASH
    const rows: StoredAuditEvent[] = events.map((event) => {
      seq += 1n
      // Millisecond precision: what JavaScript's Date holds is exactly what is hashed and read back.
      const row = {
        seq: seq.toString(),
        id: newId(),
        occurred_at: new Date(),
        type: event.type,
        agent_id: event.agentId ?? null,
        actor: event.actor,
        ip: event.ip ?? null,
        request_id: event.requestId ?? null,
        data: event.data ?? {},
        prev_hash: prevHash
      }
      const hash = hashEvent(row)
      prevHash = hash
      return { ...row, hash }
    })
    await tx`insert into audit_events ${tx(rows.map((row) => ({ ...row, data: tx.json(row.data as never) })) as never)}`
  })
}

/** The actor, IP and request id of a request, for its audit events. */
export function actorOf (request: FastifyRequest, actor = 'anonymous'): AuditActor {
  return { actor, ip: request.ip, requestId: request.id }
}

/** The audit trail, decorated on the root: every capability records through `app.audit.record`. */
export default fp(async (app) => {
  app.decorate('audit', {
    record: async (...events: AuditEvent[]) => { await appendEvents(app.sql, events) }
  })
}, { name: 'audit', dependencies: ['postgres'] })
