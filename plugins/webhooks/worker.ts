import { randomUUID } from 'node:crypto'
import { Agent as HttpAgent, type ServerResponse } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import type { LookupFunction } from 'node:net'
import { hostname } from 'node:os'
import { inOrganization, type Queryable } from '../../src/database.js'
import { EnvelopeError } from '../../src/envelope.js'
import { newId } from '../../src/ids.js'
import { outboundRequest, type KeepAliveAgents } from '../../src/outbound.js'
import { readChain, type StoredAuditEvent } from '../audit/public.js'
import { nextDelayMs, outcomeOfError, outcomeOfResponse, type AttemptOutcome } from './attempt.js'
import {
  advanceCursors, claimSubscriptions, findSubscription, headDelivery, insertDeliveries, organizationsWithEnabledWebhooks, pendingHeads, recordAttempt,
  releaseLeases, renewLeaseAndRead, updateSubscription, type AttemptRecord, type DeliveryRow, type SubscriptionRow
} from './repository.js'
import { disabledEvent, secretsOf, subscribesTo, type WebhookDeps } from './service.js'
import { signedHeaders } from './signing.js'

// Audit events read from the trail at once, for the subscriptions of a round or for one subscription.
const READ_BATCH = 200
// Subscriptions one replica serves at once; the others wait for the next round (or another replica).
const CLAIM_LIMIT = 16
// How long committed events wait for more before they wake a round.
const EVENT_BATCH_MS = 50
// A Retry-After is honoured up to a day (the longest delay of the default schedule); a longer one is read as a day.
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000
// A receiver's answer is not kept: enough of it to be read and dropped.
const MAX_RESPONSE_BYTES = 4096
// Delivering a batch, the attempts made so far are written (and the lease renewed) once this long has passed since
// the lease was last renewed: the lease (2 × the attempt timeout + 5 s) outlasts the attempt begun just before.
const RENEW_AFTER_MS = 5000
// Bodies of recent events, by event id: each subscription of a round sends the same body.
const PAYLOAD_CACHE_SIZE = 2 * READ_BATCH
// The server is saturated when this many requests are in flight at once (a queue builds up: requests arrive faster
// than it answers them), and for BUSY_WITHIN_MS after it last was: deliveries then yield to it (DeliveryGate).
const BUSY_IN_FLIGHT = 2
const BUSY_WITHIN_MS = 20
// The CPU is scarce when a timer of this period fires this much late: the event loop was busy, or the process got
// no core (other processes have them); deliveries then yield too.
const TICK_MS = 10
const LATE_MS = 5
// While the server is busy, deliveries keep at most this share of the time (one at a time, then a pause).
const BUSY_SHARE = 0.1
// An attempt stops holding the gate after this long: a local exchange takes less; longer is waiting for the network
// or a slow receiver, which uses no CPU here and must not hold up the others.
const GATE_HOLD_MS = 5

/**
 * Deliveries yield to the requests of a saturated server. Each delivery costs about what a request does (an HTTP
 * exchange, a signature), more when its receiver shares the cores: ten subscriptions to every event make ten of them
 * per token. While BUSY_IN_FLIGHT requests or more are in flight (the server answers them more slowly than they
 * come), or a timer fires LATE_MS late (the CPU is scarce, whatever takes it), one delivery at a time passes, and the next waits until the gate was held BUSY_SHARE of the time at most;
 * an attempt that takes longer than GATE_HOLD_MS lets the next one go (a slow receiver uses no CPU meanwhile).
 * Otherwise, under any load the server keeps up with, deliveries go side by side, as many as the subscriptions
 * served. So under full load the token endpoint keeps its throughput and the deliveries queue up (the lag grows),
 * to go out as soon as the load eases.
 */
export class DeliveryGate {
  #inFlight = 0
  #lastBusyAt = -Infinity
  #held = false
  #open = false
  readonly #waiting: Array<() => void> = []
  #ticker: NodeJS.Timeout | undefined

  /** Starts watching how late a timer fires (until open()). */
  watch (): void {
    let expectedAt = performance.now() + TICK_MS
    this.#ticker = setInterval(() => {
      const now = performance.now()
      if (now - expectedAt > LATE_MS) this.#lastBusyAt = now
      expectedAt = now + TICK_MS
    }, TICK_MS)
    this.#ticker.unref()
  }

  /** The server received a request; `response` closes when it is answered (or the connection is gone). */
  requestReceived (response: ServerResponse): void {
    this.#inFlight += 1
    if (this.#inFlight >= BUSY_IN_FLIGHT) this.#lastBusyAt = performance.now()
    response.once('close', () => { this.#inFlight -= 1 })
  }

  /** Waits for the gate when the server is busy; returns what ends the delivery's hold of it. */
  async pass (): Promise<() => void> {
    while (!this.#open && this.#busy()) {
      if (!this.#held) {
        this.#held = true
        return this.#hold()
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    }
    return () => {}
  }

  #busy (): boolean {
    return performance.now() - this.#lastBusyAt <= BUSY_WITHIN_MS
  }

  /** The end of a hold: after the attempt or GATE_HOLD_MS, then a pause so the gate is held BUSY_SHARE of the time. */
  #hold (): () => void {
    const since = performance.now()
    let done = false
    const release = (): void => {
      if (done) return
      done = true
      clearTimeout(slow)
      const held = Math.min(performance.now() - since, GATE_HOLD_MS)
      setTimeout(() => { this.#next() }, held * (1 / BUSY_SHARE - 1))
    }
    const slow = setTimeout(release, GATE_HOLD_MS)
    return release
  }

  /** The next waiting delivery goes, or all of them when the server is no longer busy. */
  #next (): void {
    this.#held = false
    for (const next of this.#waiting.splice(0, this.#busy() ? 1 : this.#waiting.length)) next()
  }

  /** From now on lets every delivery go, the waiting ones first (shutting down). */
  open (): void {
    this.#open = true
    clearInterval(this.#ticker)
    for (const next of this.#waiting.splice(0)) next()
  }
}

/** The body of one audit event's delivery: Standard Webhooks' {type, timestamp, data}, and where it is in the trail. */
export function eventPayload (event: StoredAuditEvent): string {
  return JSON.stringify({
    type: event.type,
    timestamp: event.occurred_at.toISOString(),
    data: event.data,
    event: { id: event.id, seq: event.seq, agent_id: event.agent_id, actor: event.actor }
  })
}

/** The webhook-id of an audit event's deliveries: the same on every attempt and redelivery. */
const messageIdOf = (event: StoredAuditEvent): string => `msg_${event.id}`

/**
 * A subscription's next piece of work, under its lease: its oldest pending delivery (a retry, a test, a
 * redelivery), which goes first; or else the trail's events after its cursor that it names, read up to `readTo`.
 */
interface Turn {
  subscription: SubscriptionRow
  head?: DeliveryRow
  events: StoredAuditEvent[]
  readTo?: string
}

/** One attempt made of a trail event, not yet written. */
interface Attempted {
  event: StoredAuditEvent
  payload: string
  outcome: AttemptOutcome
}

/** What an attempt's outcome (the `attempts`th of its delivery) makes of the delivery. */
function attemptRecord (outcome: AttemptOutcome, attempts: number, scheduleMs: number[], now: Date): AttemptRecord {
  if (outcome.kind === 'success') return { status: 'succeeded', last_status_code: outcome.statusCode, last_error: null, next_attempt_at: null, completed_at: now }
  if (outcome.kind === 'gone') return { status: 'failed', last_status_code: 410, last_error: 'HTTP 410: the receiver is gone', next_attempt_at: null, completed_at: now }
  const delay = nextDelayMs(attempts, scheduleMs, outcome.retryAfterMs)
  return delay === undefined
    ? { status: 'failed', last_status_code: outcome.statusCode, last_error: outcome.error, next_attempt_at: null, completed_at: now }
    : { status: 'pending', last_status_code: outcome.statusCode, last_error: outcome.error, next_attempt_at: new Date(now.getTime() + delay), completed_at: null }
}

/**
 * Delivers the audit trail to webhook subscriptions: at least once, in chain order per subscription. A round leases
 * the subscriptions no other worker holds (claimSubscriptions) and reads the trail once after the lowest of their
 * cursors; each subscription with something to deliver is then served on its own: its oldest pending delivery first
 * (a retry, a test, a redelivery), one attempt at a time, and otherwise the events after its cursor, sent one after
 * the other and written afterwards, a batch at a time: one statement for the batch's delivery rows, one to move the
 * cursor past them. The first failure ends a batch: it is written as the pending head, which holds the later events
 * back until it succeeds or is given up, without holding up the other subscriptions. Everything is in PostgreSQL: a
 * replica that dies loses nothing, its leases run out and another replica (or itself, restarted) carries on from the
 * cursor, re-sending, with the same webhook-id, at most the events of the batch it was delivering. Each active
 * organization with an enabled subscription is served in transactions of its own (inOrganization), from its own
 * chain; the others are not visited at all (organizationsWithEnabledWebhooks).
 */
export class DeliveryWorker {
  /** Names this worker in the leases it holds. */
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  /** Rounds completed, and the organizations they served (one transaction each, at least): what polling costs. */
  readonly stats = { rounds: 0, organizationsServed: 0 }
  readonly #leaseMs: number
  #stopping = false
  #running: Promise<void> | undefined
  #wakeUp: (() => void) | undefined
  // The organizations the next round serves: every active one with an enabled subscription (a timer's round, a
  // change), or those of them whose audit events this replica committed since the last round.
  #due: Set<string> | 'all' = 'all'
  #committed = new Set<string>()
  #failing = false
  // The last round leased no subscription: there is none to serve here, so a committed event need not wake a round
  // (the token endpoint commits events all the time); the timer still looks, and a new subscription wakes it.
  #idle = false
  #soon: NodeJS.Timeout | undefined
  readonly #inFlight = new Set<AbortController>()
  #lookup: LookupFunction | undefined
  // Connections to receivers, kept alive between deliveries; each checked (guardedLookup) when it was opened.
  #agents = DeliveryWorker.#newAgents()
  readonly #payloads = new Map<string, string>()
  readonly #gate = new DeliveryGate()

  constructor (private readonly deps: WebhookDeps) {
    // Longer than an attempt and the writes around it: a live worker renews it at least every RENEW_AFTER_MS.
    this.#leaseMs = 2 * deps.config.webhooks.timeoutMs + 5000
  }

  static #newAgents (): KeepAliveAgents {
    // Idle connections are closed after 4 s, before a receiver's keep-alive timeout would (5 s in Node.js).
    return { http: new HttpAgent({ keepAlive: true, timeout: 4000 }), https: new HttpsAgent({ keepAlive: true, timeout: 4000 }) }
  }

  /** The resolver receivers' names are looked up with (the system's by default; tests give their own). */
  get lookup (): LookupFunction | undefined { return this.#lookup }
  set lookup (lookup: LookupFunction | undefined) {
    // A connection opened on what the previous resolver answered is not reused.
    this.#lookup = lookup
    this.#agents.http.destroy()
    this.#agents.https.destroy()
    this.#agents = DeliveryWorker.#newAgents()
  }

  start (): void {
    if (this.#running === undefined) this.#gate.watch()
    this.#running ??= this.#loop()
  }

  /** The server received a request: deliveries yield to a saturated server's requests (DeliveryGate). */
  requestReceived (response: ServerResponse): void {
    this.#gate.requestReceived(response)
  }

  /** Something is due now (a subscription changed, a test queued): run a round without waiting for the timer. */
  wake (): void {
    this.#idle = false
    this.#due = 'all'
    this.#wakeUp?.()
  }

  /**
   * This replica committed audit events of `orgId`: soon a round of the organizations that did, unless no
   * subscription is served here. Commits of EVENT_BATCH_MS share one round: under load the token endpoint commits all
   * the time, and a round for each commit would compete with it for connections. Other replicas' events, and retries
   * coming due, wait for the timer's round (WEBHOOK_POLL_INTERVAL_MS), which serves every active organization with
   * an enabled subscription.
   */
  eventsCommitted (orgId: string): void {
    if (this.#idle) return
    this.#committed.add(orgId)
    if (this.#soon !== undefined) return
    this.#soon = setTimeout(() => {
      this.#soon = undefined
      const due = this.#due
      if (due !== 'all') for (const committed of this.#committed) due.add(committed)
      this.#committed.clear()
      this.#wakeUp?.()
    }, EVENT_BATCH_MS)
  }

  /**
   * Stops taking work and waits for the round in progress. Attempts still in flight after `graceMs` are aborted and
   * left pending (their lease released), so another replica or the next start sends them again.
   */
  async stop (graceMs: number): Promise<void> {
    this.#stopping = true
    clearTimeout(this.#soon)
    this.#gate.open()
    this.#wakeUp?.()
    const abort = setTimeout(() => { for (const controller of this.#inFlight) controller.abort() }, graceMs)
    try {
      await this.#running
    } finally {
      clearTimeout(abort)
      this.#agents.http.destroy()
      this.#agents.https.destroy()
    }
  }

  async #loop (): Promise<void> {
    while (!this.#stopping) {
      const due = this.#due
      this.#due = new Set()
      try {
        await this.#round(due)
        if (this.#failing) this.deps.log.info('webhook delivery worker recovered')
        this.#failing = false
      } catch (error) {
        // The database is away, most likely: say it once, then keep trying each interval.
        if (!this.#failing) this.deps.log.warn({ err: { message: (error as Error).message, code: (error as { code?: string }).code } }, 'webhook delivery round failed: retrying')
        this.#failing = true
      }
      // A change, a committed event or a full batch during the round: round again at once.
      const next = this.#due as Set<string> | 'all'
      if (this.#stopping || next === 'all' || next.size > 0) continue
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { this.#due = 'all'; resolve() }, this.deps.config.webhooks.pollIntervalMs)
        this.#wakeUp = () => { clearTimeout(timer); resolve() }
      })
      this.#wakeUp = undefined
    }
  }

  /**
   * One round, of the organizations `due` that have an enabled subscription: in one transaction per organization, lease the subscriptions no other worker holds, read the trail
   * once after the lowest of their cursors, move past what none of them names, and let go of those with nothing due;
   * then serve the others, each on its own, starting with what was read.
   */
  async #round (due: Set<string> | 'all'): Promise<void> {
    if (due !== 'all' && due.size === 0) return
    let leased = 0
    let served = 0
    for (const orgId of await organizationsWithEnabledWebhooks(this.deps.sql, due === 'all' ? undefined : [...due])) {
      if (this.#stopping) break
      served += 1
      const due = await inOrganization(this.deps.sql, orgId, async (tx) => {
        const claimed = await claimSubscriptions(tx, this.owner, this.#leaseMs, CLAIM_LIMIT)
        leased += claimed.length
        if (claimed.length === 0) return []
        const heads = new Map((await pendingHeads(tx, claimed.map((subscription) => subscription.id))).map((head) => [head.subscription_id, head.due]))
        const free = claimed.filter((subscription) => !heads.has(subscription.id))
        const lowest = free.reduce((low, subscription) => (BigInt(subscription.after_seq) < BigInt(low) ? subscription.after_seq : low), free[0]?.after_seq ?? '0')
        const events = free.length === 0 ? [] : await readChain(tx, { afterSeq: lowest, limit: READ_BATCH })
        if (events.length === READ_BATCH && this.#due !== 'all') this.#due.add(orgId)
        const readTo = events.at(-1)?.seq
        const turns: Turn[] = []
        const idle: string[] = []
        const passed: string[] = []
        for (const subscription of claimed) {
          const headDue = heads.get(subscription.id)
          const mine = headDue === undefined ? this.#eventsFor(subscription, events) : []
          if (headDue === true) turns.push({ subscription, events: [] })
          else if (mine.length > 0) turns.push({ subscription, events: mine, readTo })
          else {
            idle.push(subscription.id)
            if (headDue === undefined && readTo !== undefined) passed.push(subscription.id)
          }
        }
        if (passed.length > 0 && readTo !== undefined) await advanceCursors(tx, passed, readTo)
        if (idle.length > 0) await releaseLeases(tx, idle, this.owner)
        return turns
      })
      await Promise.all(due.map(async (turn) => { await this.#serve(orgId, turn) }))
    }
    // Counted together as the round ends, so a reader of the stats never sees half a round.
    this.stats.rounds += 1
    this.stats.organizationsServed += served
    if (due === 'all') this.#idle = leased === 0
  }

  /** The events of `events` a subscription receives: after its cursor, of the types it names. */
  #eventsFor (subscription: SubscriptionRow, events: StoredAuditEvent[]): StoredAuditEvent[] {
    const after = BigInt(subscription.after_seq)
    return events.filter((event) => BigInt(event.seq) > after && subscribesTo(subscription, event.type))
  }

  /**
   * One subscription's turns, under its lease, until nothing is due: its oldest pending delivery when it has one
   * (when due), else the trail after its cursor. A pending delivery has a lower seq than the cursor (it was written
   * when the cursor passed it), so this is chain order.
   */
  async #serve (orgId: string, first: Turn): Promise<void> {
    const subscriptionId = first.subscription.id
    try {
      let turn: Turn | undefined = first.head === undefined && first.events.length === 0 ? await this.#prepare(orgId, subscriptionId) : first
      while (turn !== undefined && !this.#stopping) {
        let goOn: boolean
        if (turn.head !== undefined) {
          if (turn.head.next_attempt_at !== null && turn.head.next_attempt_at.getTime() > Date.now()) return
          goOn = await this.#attemptPending(orgId, turn.subscription, turn.head)
        } else if (turn.events.length > 0) {
          goOn = await this.#deliverEvents(orgId, turn)
        } else {
          return
        }
        if (!goOn) return
        turn = await this.#prepare(orgId, subscriptionId)
      }
    } finally {
      await inOrganization(this.deps.sql, orgId, async (tx) => { await releaseLeases(tx, [subscriptionId], this.owner) }).catch(() => {
        // The lease runs out by itself.
      })
    }
  }

  /**
   * Renews the lease and reads the subscription's next turn, in one transaction: its oldest pending delivery, or
   * the events after its cursor that it names (moving the cursor past those it does not). Undefined when the lease
   * was lost or the subscription deleted or disabled meanwhile.
   */
  async #prepare (orgId: string, subscriptionId: string): Promise<Turn | undefined> {
    return await inOrganization(this.deps.sql, orgId, async (tx) => {
      const subscription = await renewLeaseAndRead(tx, subscriptionId, this.owner, this.#leaseMs)
      if (subscription === undefined || !subscription.enabled) return undefined
      const head = await headDelivery(tx, subscriptionId)
      if (head !== undefined) return { subscription, head, events: [] }
      let afterSeq = subscription.after_seq
      for (;;) {
        const events = await readChain(tx, { afterSeq, limit: READ_BATCH })
        const mine = this.#eventsFor(subscription, events)
        const readTo = events.at(-1)?.seq
        if (mine.length > 0 || readTo === undefined) return { subscription, events: mine, readTo }
        await advanceCursors(tx, [subscriptionId], readTo)
        if (events.length < READ_BATCH) return { subscription, events: [] }
        afterSeq = readTo
      }
    })
  }

  /** The body of an event's deliveries, made once for all the subscriptions that receive it. */
  #payloadOf (event: StoredAuditEvent): string {
    let payload = this.#payloads.get(event.id)
    if (payload === undefined) {
      if (this.#payloads.size >= PAYLOAD_CACHE_SIZE) this.#payloads.clear()
      payload = eventPayload(event)
      this.#payloads.set(event.id, payload)
    }
    return payload
  }

  /**
   * Sends a turn's events one after the other, in chain order, until one fails, then writes what happened in one
   * transaction (sooner, every RENEW_AFTER_MS, when the batch takes long). Whether the subscription goes on.
   */
  async #deliverEvents (orgId: string, turn: Turn): Promise<boolean> {
    const { subscription } = turn
    const secrets = this.#secrets(subscription)
    let attempted: Attempted[] = []
    let renewedAt = Date.now()
    for (const event of turn.events) {
      if (this.#stopping) break
      if (attempted.length > 0 && Date.now() - renewedAt > RENEW_AFTER_MS) {
        if (!await this.#recordEvents(orgId, subscription.id, attempted, (attempted.at(-1) as Attempted).event.seq)) return false
        attempted = []
        renewedAt = Date.now()
      }
      const payload = this.#payloadOf(event)
      const outcome = await this.#send(subscription, secrets, messageIdOf(event), payload, event.occurred_at, 0)
      // Shutting down: not an attempt of the receiver's; the cursor stays before it.
      if (outcome === undefined) break
      attempted.push({ event, payload, outcome })
      if (outcome.kind !== 'success') break
    }
    const last = attempted.at(-1)
    if (last === undefined) return false
    const complete = attempted.length === turn.events.length && last.outcome.kind === 'success' && turn.readTo !== undefined
    return await this.#recordEvents(orgId, subscription.id, attempted, complete ? turn.readTo as string : last.event.seq)
  }

  /**
   * Writes attempts made of trail events: their delivery rows (a failure as the pending head, or given up), the
   * cursor moved to `cursor`, and what follows for the subscription, in one transaction under a renewed lease.
   * Nothing is written when the lease was lost (the next holder sends them again) or the subscription deleted.
   */
  async #recordEvents (orgId: string, subscriptionId: string, attempted: Attempted[], cursor: string): Promise<boolean> {
    const now = new Date()
    const schedule = this.deps.config.webhooks.retryScheduleMs
    return await inOrganization(this.deps.sql, orgId, async (tx) => {
      const current = await renewLeaseAndRead(tx, subscriptionId, this.owner, this.#leaseMs)
      if (current === undefined) return false
      const records = attempted.map(({ outcome }) => attemptRecord(outcome, 1, schedule, now))
      await insertDeliveries(tx, attempted.map(({ event, payload }, n) => ({
        id: newId(),
        subscription_id: subscriptionId,
        message_id: messageIdOf(event),
        event_type: event.type,
        event_seq: event.seq,
        event_at: event.occurred_at,
        payload,
        attempt: records[n]
      })))
      await advanceCursors(tx, [subscriptionId], cursor)
      return await this.#followUp(tx, current, attempted.map(({ outcome }, n) => ({ outcome, record: records[n] as AttemptRecord })), now)
    })
  }

  /**
   * One attempt of a pending delivery (a retry, a test, a redelivery) and its record. Whether the subscription goes
   * on to its next delivery (false when it waits: a retry, a disabling, a shutdown, a lost lease).
   */
  async #attemptPending (orgId: string, subscription: SubscriptionRow, delivery: DeliveryRow): Promise<boolean> {
    const outcome = await this.#send(subscription, this.#secrets(subscription), delivery.message_id, delivery.payload, delivery.event_at, delivery.attempts)
    if (outcome === undefined) return false
    const now = new Date()
    return await inOrganization(this.deps.sql, orgId, async (tx) => {
      const current = await findSubscription(tx, subscription.id, true)
      if (current === undefined) return false
      const record = attemptRecord(outcome, delivery.attempts + 1, this.deps.config.webhooks.retryScheduleMs, now)
      await recordAttempt(tx, delivery.id, record)
      if (record.status === 'pending' || record.status === 'failed') {
        this.deps.log.debug({ webhookId: current.id, deliveryId: delivery.id, attempt: delivery.attempts + 1, statusCode: record.last_status_code, error: record.last_error, retryInMs: record.next_attempt_at === null ? null : record.next_attempt_at.getTime() - now.getTime() }, 'webhook delivery attempt failed')
      }
      return await this.#followUp(tx, current, [{ outcome, record }], now)
    })
  }

  /** The subscription's signing secrets, or why they cannot be opened (every attempt then fails as refused). */
  #secrets (subscription: SubscriptionRow): string[] | EnvelopeError {
    try {
      const kek = this.deps.keyEncryptionKey
      if (kek === undefined) throw new EnvelopeError('KEY_ENCRYPTION_KEY is not set')
      return secretsOf(kek, subscription)
    } catch (error) {
      if (error instanceof EnvelopeError) return error
      throw error
    }
  }

  /**
   * One attempt: the request, signed, and its outcome; undefined when the worker is shutting down (not an attempt of
   * the receiver's: left pending for the next worker). `attemptsBefore` 0: the first, whose lag is measured.
   */
  async #send (subscription: SubscriptionRow, secrets: string[] | EnvelopeError, messageId: string, payload: string, eventAt: Date, attemptsBefore: number): Promise<AttemptOutcome | undefined> {
    const { config, metrics, log } = this.deps
    let outcome: AttemptOutcome
    const controller = new AbortController()
    const release = await this.#gate.pass()
    if (attemptsBefore === 0) metrics.webhookLag.observe(Math.max(0, Date.now() - eventAt.getTime()) / 1000)
    try {
      if (this.#stopping) return undefined
      if (secrets instanceof EnvelopeError) throw secrets
      this.#inFlight.add(controller)
      const response = await outboundRequest(subscription.url, {
        method: 'POST',
        headers: signedHeaders(secrets, messageId, payload),
        body: payload,
        timeoutMs: config.webhooks.timeoutMs,
        maxResponseBytes: MAX_RESPONSE_BYTES,
        allowPrivateNetworks: config.webhooks.allowPrivateNetworks,
        signal: controller.signal,
        lookup: this.#lookup,
        keepAlive: this.#agents
      })
      outcome = outcomeOfResponse(response, MAX_RETRY_AFTER_MS)
    } catch (error) {
      if (controller.signal.aborted) return undefined
      if (error instanceof EnvelopeError) {
        log.error({ webhookId: subscription.id, err: { message: error.message } }, 'webhook signing secret cannot be opened: is KEY_ENCRYPTION_KEY the one that sealed it?')
        outcome = { kind: 'failure', statusCode: null, error: 'the signing secret cannot be opened (KEY_ENCRYPTION_KEY changed?)', metric: 'refused' }
      } else {
        outcome = outcomeOfError(error as Error)
      }
    } finally {
      this.#inFlight.delete(controller)
      release()
    }
    metrics.webhookAttempts.inc({ outcome: outcome.kind === 'failure' ? outcome.metric : outcome.kind })
    return outcome
  }

  /**
   * What recorded attempts mean for their subscription (`current`, as locked by the caller's transaction): the
   * failure streak, set or cleared; a 410 or a streak of WEBHOOK_DISABLE_AFTER_DAYS disables it, with its audit
   * event. Whether the subscription goes on to its next delivery: the last attempt succeeded or was given up.
   */
  async #followUp (tx: Queryable, current: SubscriptionRow, results: Array<{ outcome: AttemptOutcome, record: AttemptRecord }>, now: Date): Promise<boolean> {
    const { config, metrics } = this.deps
    let failingSince = current.failing_since
    for (const { outcome, record } of results) {
      if (record.status === 'succeeded') metrics.webhookDeliveries.inc({ outcome: 'succeeded' })
      else if (record.status === 'failed') metrics.webhookDeliveries.inc({ outcome: 'failed' })
      failingSince = outcome.kind === 'success' ? null : failingSince ?? now
    }
    const last = results.at(-1)
    if (last === undefined) return current.enabled
    if (last.outcome.kind === 'gone') {
      await this.#disable(tx, current, 'gone', { status_code: 410 })
      return false
    }
    if (failingSince !== null && now.getTime() - failingSince.getTime() >= config.webhooks.disableAfterMs) {
      await this.#disable(tx, current, 'failing', { failing_since: failingSince.toISOString() })
      return false
    }
    if (failingSince?.getTime() !== current.failing_since?.getTime()) await updateSubscription(tx, current.id, { failing_since: failingSince })
    // A delivery given up lets the next one go; one that waits for its retry holds the others back (order).
    return current.enabled && last.record.status !== 'pending'
  }

  async #disable (tx: Queryable, subscription: SubscriptionRow, reason: 'gone' | 'failing', details: Record<string, unknown>): Promise<void> {
    await updateSubscription(tx, subscription.id, { enabled: false, disabled_reason: reason })
    await this.deps.audit.recordIn(tx, disabledEvent(subscription, reason, details))
    this.deps.log.warn({ webhookId: subscription.id, reason }, 'webhook subscription disabled')
  }
}


