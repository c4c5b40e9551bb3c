import { EventEmitter } from 'node:events'
import { hostname } from 'node:os'
import fp from 'fastify-plugin'
import { DEFAULT_ORG_ID, inOrganization, type Queryable, type Sql } from '../../src/database.js'
import { appendForOrganizations, appendInTransaction, appendUnderLock, chainWritersDone, storable, type Storable } from './chain.js'
import type { AuditEvent, StoredAuditEvent } from './events.js'
import { keyEvents, readChain } from './repository.js'
import type { SigningKeys } from '../infra/keys.js'

export interface AuditTrail {
  /**
   * Records events through the group commit, in a transaction of their own; resolves once they are committed,
   * rejects when their batch could not be. The events of one call commit together, in the order given. For acts
   * that change nothing else (token.issued, refusals). Never await it inside a transaction: the batch needs a
   * connection of its own, and the embedded default has one.
   */
  record(...events: AuditEvent[]): Promise<void>
  /**
   * Appends events inside the caller's transaction (the `sql` of `sql.begin`), so they commit or roll back with
   * the change they record. Call it last in the transaction: it takes the chain lock, held until commit.
   */
  recordIn(tx: Queryable, ...events: AuditEvent[]): Promise<void>  // into the chain of tx's organization (inOrganization)
  /**
   * Runs `decide` inside the chain lock and records the events it returns in the same transaction: for events
   * that must be recorded at most once however many replicas try at the same time (key material at start-up).
   */
  recordUnderLock(orgId: string, decide: (tx: Sql) => Promise<AuditEvent[]>): Promise<void>
  /** An organization's committed events after `afterSeq` ('0' for the first), in chain order, at most `limit`: for subscribers. */
  readChain(options: { orgId: string, afterSeq: string, limit: number }): Promise<StoredAuditEvent[]>
  /**
   * Emits 'committed' (the last seq written, and the organization's chain) once events this process wrote are
   * committed, or their transaction ended: a subscriber wakes and reads on with readChain. Other replicas' events
   * are not announced here.
   */
  readonly notifications: EventEmitter<{ committed: [seq: string, orgId: string] }>
  /** Committed group-commit transactions and the events they held, since start (for tests and metrics). */
  readonly stats: { batches: number, events: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditTrail
  }
}

// 11 parameters a row: 500 rows stay far below PostgreSQL's 65,535 bind parameters and keep a transaction short.
const MAX_BATCH_EVENTS = 500
// Two: the commit of one batch overlaps the statements of the next. Across many organizations a batch takes longer
// (one lock and one insert an organization, in two statements), and one flush at a time left the token endpoint
// waiting on it with the CPU idle.
const FLUSHES_IN_FLIGHT = 2

interface Pending {
  events: Array<{ orgId: string, row: Storable }>
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * Group commit: record() queues its events; a flush takes everything queued (up to MAX_BATCH_EVENTS) into one
 * transaction. Nothing waits when idle: the first event flushes at once, and whatever arrives while a flush is in
 * flight goes in the next one, so the batch grows with the load. Up to FLUSHES_IN_FLIGHT flushes overlap: the next
 * starts once the previous holds its chains' locks, so one batch's commit (its WAL flush) overlaps the next one's
 * statements, and a chain both batches write gets the earlier batch's events first. recordIn() appends in the
 * caller's transaction instead. A batch transaction takes only chain locks, in the order of their organizations'
 * ids, so it cannot close a cycle with another batch, nor with a caller's transaction that holds row locks and then
 * waits for the chain lock.
 */
export class GroupCommitTrail implements AuditTrail {
  readonly stats = { batches: 0, events: 0 }
  readonly notifications = new EventEmitter<{ committed: [seq: string, orgId: string] }>()
  #queue: Pending[] = []
  #flushing: Promise<void> | undefined
  // Wakes the drain, waiting with a flush to spare and nothing queued, when a record arrives.
  #wake: (() => void) | undefined
  // Waits for callers' transactions to end before announcing their events: finished before the pool closes.
  #announcing = new Set<Promise<void>>()

  constructor (private readonly sql: Sql, private readonly onBatch: (size: number) => void = () => {}) {}

  async record (...events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return
    const rows = events.map((event) => ({ orgId: event.orgId, row: storable(event) }))
    await new Promise<void>((resolve, reject) => {
      this.#queue.push({ events: rows, resolve, reject })
      this.#flushing ??= this.#drain()
      this.#wake?.()
    })
  }

  async recordIn (tx: Queryable, ...events: AuditEvent[]): Promise<void> {
    const seq = await appendInTransaction(tx, events.map(storable))
    // The transaction's organization is the events' (the caller opened it with inOrganization for the actor's).
    if (seq !== undefined && events[0] !== undefined) this.#announceAfterCommit(seq, events[0].orgId)
  }

  async recordUnderLock (orgId: string, decide: (tx: Sql) => Promise<AuditEvent[]>): Promise<void> {
    const seq = await appendUnderLock(this.sql, orgId, async (tx) => (await decide(tx)).map(storable))
    if (seq !== undefined) this.notifications.emit('committed', seq, orgId)
  }

  async readChain (options: { orgId: string, afterSeq: string, limit: number }): Promise<StoredAuditEvent[]> {
    return await inOrganization(this.sql, options.orgId, async (tx) => await readChain(tx, options))
  }

  /** Resolves once every event queued so far is committed or refused, and every announcement made. */
  async flush (): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing
    await Promise.all(this.#announcing)
  }

  /**
   * The driver tells nobody when a transaction commits: a statement of another connection waits on the chain lock
   * the caller's transaction holds until it ends. Not awaited by recordIn, whose caller still holds the
   * connection this needs on the embedded default; skipped while nobody listens.
   */
  #announceAfterCommit (seq: string, orgId: string): void {
    if (this.notifications.listenerCount('committed') === 0) return
    const announcing = chainWritersDone(this.sql, orgId).then(
      () => { this.notifications.emit('committed', seq, orgId) },
      // A subscriber also reads on its own schedule: a lost announcement delays it, loses nothing.
      () => {}
    ).finally(() => { this.#announcing.delete(announcing) })
    this.#announcing.add(announcing)
  }

  async #drain (): Promise<void> {
    // One turn of the event loop lets the records of the same tick join the first batch.
    await new Promise((resolve) => setImmediate(resolve))
    const inFlight = new Set<Promise<void>>()
    let previousLocked: Promise<void> = Promise.resolve()
    while (this.#queue.length > 0 || inFlight.size > 0) {
      if (this.#queue.length === 0 || inFlight.size >= FLUSHES_IN_FLIGHT) {
        // A flush ends, or (with one to spare) a record arrives. With none to spare a record cannot start one, so it
        // does not wake the loop: under load every token records, and each wake-up would be wasted.
        await new Promise<void>((resolve) => {
          if (inFlight.size < FLUSHES_IN_FLIGHT) this.#wake = resolve
          for (const flight of inFlight) void flight.then(resolve)
        })
        this.#wake = undefined
        continue
      }
      // The previous batch holds its chains' locks: this one queues behind it on any chain they share.
      await previousLocked
      if (this.#queue.length === 0) continue
      const batch = this.#takeBatch()
      let locked = (): void => {}
      previousLocked = new Promise<void>((resolve) => { locked = resolve })
      const flight: Promise<void> = this.#commit(batch, locked).finally(() => {
        locked()
        inFlight.delete(flight)
      })
      inFlight.add(flight)
    }
    this.#flushing = undefined
  }

  /** Commits one batch in a transaction of its own; calls locked once its chains are locked (or it failed). */
  async #commit (batch: Pending[], locked: () => void): Promise<void> {
    // Each organization's events go to its own chain, in the order queued, all in this one transaction: one commit
    // (one WAL flush) for the batch however many organizations it spans, in two round trips (appendForOrganizations).
    const byOrganization = new Map<string, Storable[]>()
    for (const { orgId, row } of batch.flatMap((pending) => pending.events)) {
      const rows = byOrganization.get(orgId)
      if (rows === undefined) byOrganization.set(orgId, [row])
      else rows.push(row)
    }
    const orgIds = [...byOrganization.keys()].sort()
    try {
      const heads = await inOrganization(this.sql, orgIds[0] as string, async (tx) => await appendForOrganizations(tx, byOrganization, locked))
      const size = batch.reduce((sum, pending) => sum + pending.events.length, 0)
      this.stats.batches += 1
      this.stats.events += size
      this.onBatch(size)
      for (const pending of batch) pending.resolve()
      for (const [orgId, seq] of heads) if (seq !== undefined) this.notifications.emit('committed', seq, orgId)
    } catch (error) {
      for (const pending of batch) pending.reject(error)
    }
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

/**
 * Records key material changes seen at start-up: key.current when the current kid is not the one the trail last
 * recorded, key.previous_published for each previous kid the trail has not seen published. Decided under the chain
 * lock, so replicas starting together record each change once, and a restart with the same keys records nothing.
 */
export async function recordKeyMaterial (audit: AuditTrail, keys: SigningKeys): Promise<void> {
  // The configured keys are the default organization's; an organization's own keys record key.rotated.
  const actor = { orgId: DEFAULT_ORG_ID, actor: 'system', ip: null, requestId: null }
  const host = hostname()
  await audit.recordUnderLock(DEFAULT_ORG_ID, async (tx) => {
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

/** The audit trail, decorated on the root: capabilities record through `app.audit.recordIn` or `app.audit.record`. */
export default fp(async (app) => {
  const trail = new GroupCommitTrail(app.sql, (size) => app.metrics.auditBatchSize.observe(size))
  app.decorate('audit', trail as AuditTrail)
  // Registered after postgres, so this runs before the connection pool ends.
  app.addHook('onClose', async () => { await trail.flush() })
  // The keys loaded first (a bad key stops the start before any connection opens); the trail records them now.
  // Start-up only, so app.keys, not a request's issuer context.
  await recordKeyMaterial(trail, app.keys)
}, { name: 'audit', dependencies: ['postgres', 'metrics', 'keys'] })
