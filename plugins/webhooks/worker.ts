import { randomUUID } from 'node:crypto'
import type { LookupFunction } from 'node:net'
import { hostname } from 'node:os'
import { inOrganization, type Queryable } from '../../src/database.js'
import { EnvelopeError } from '../../src/envelope.js'
import { newId } from '../../src/ids.js'
import { outboundRequest } from '../../src/outbound.js'
import { readChain, type StoredAuditEvent } from '../audit/public.js'
import { nextDelayMs, outcomeOfError, outcomeOfResponse, type AttemptOutcome } from './attempt.js'
import {
  activeOrganizationIds, advanceCursors, claimSubscriptions, findSubscription, headDelivery, insertDeliveries, recordAttempt, releaseLeases, renewLease,
  subscriptionsWithDueDelivery, updateSubscription, type DeliveryRow, type NewDelivery, type SubscriptionRow
} from './repository.js'
import { disabledEvent, secretsOf, subscribesTo, type WebhookDeps } from './service.js'
import { signedHeaders } from './signing.js'

// Audit events read from the trail a round, per subscription.
const ENQUEUE_BATCH = 200
// Subscriptions one replica serves at once; the others wait for the next round (or another replica).
const CLAIM_LIMIT = 16
// How long committed events wait for more before they wake a round.
const EVENT_BATCH_MS = 50
// A Retry-After is honoured up to a day (the longest delay of the default schedule); a longer one is read as a day.
const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000
// A receiver's answer is not kept: enough of it to be read and dropped.
const MAX_RESPONSE_BYTES = 4096

/** The body of one audit event's delivery: Standard Webhooks' {type, timestamp, data}, and where it is in the trail. */
export function eventPayload (event: StoredAuditEvent): string {
  return JSON.stringify({
    type: event.type,
    timestamp: event.occurred_at.toISOString(),
    data: event.data,
    event: { id: event.id, seq: event.seq, agent_id: event.agent_id, actor: event.actor }
  })
}



/** A subscription under lease, as it now is, and its oldest pending delivery; `more`: the trail has more to read. */
interface Turn {
  subscription: SubscriptionRow
  head: DeliveryRow | undefined
  more: boolean
}

/** The deliveries of `events` to a subscription: those after its cursor, of the types it names, in chain order. */
function deliveriesOf (subscription: SubscriptionRow, events: StoredAuditEvent[]): NewDelivery[] {
  const after = BigInt(subscription.after_seq)
  return events.filter((event) => BigInt(event.seq) > after && subscribesTo(subscription, event.type)).map((event) => ({
    id: newId(),
    subscription_id: subscription.id,
    message_id: `msg_${event.id}`,
    event_type: event.type,
    event_seq: event.seq,
    event_at: event.occurred_at,
    payload: eventPayload(event)
  }))
}

/**
 * Delivers the audit trail to webhook subscriptions: at least once, in chain order per subscription. A round leases
 * the subscriptions no other worker holds (claimSubscriptions), and for each: reads the trail after its cursor into
 * pending deliveries (cursor and deliveries in one transaction), then attempts its oldest pending delivery, and the
 * next only once that one succeeded or was given up. A failure waits for its retry without holding up the other
 * subscriptions. Everything is in PostgreSQL: a replica that dies loses nothing, its leases run out and another
 * replica (or itself, restarted) carries on, re-sending at most the attempt it was making. Each active organization
 * is served in transactions of its own (inOrganization), from its own chain.
 */
export class DeliveryWorker {
  /** Names this worker in the leases it holds. */
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  /** The resolver receivers' names are looked up with (the system's by default; tests give their own). */
  lookup: LookupFunction | undefined
  readonly #leaseMs: number
  #stopping = false
  #running: Promise<void> | undefined
  #wakeUp: (() => void) | undefined
  #again = false
  #failing = false
  // The last round leased no subscription: there is none to serve here, so a committed event need not wake a round
  // (the token endpoint commits events all the time); the timer still looks, and a new subscription wakes it.
  #idle = false
  #soon: NodeJS.Timeout | undefined
  readonly #inFlight = new Set<AbortController>()

  constructor (private readonly deps: WebhookDeps) {
    // Longer than an attempt and the writes around it: a live worker renews it before each attempt.
    this.#leaseMs = 2 * deps.config.webhooks.timeoutMs + 5000
  }

  start (): void {
    this.#running ??= this.#loop()
  }

  /** Something is due now (a subscription changed, a test queued): run a round without waiting for the timer. */
  wake (): void {
    this.#idle = false
    this.#again = true
    this.#wakeUp?.()
  }

  /**
   * This replica committed audit events: a round soon, unless no subscription is served here. Commits of EVENT_BATCH_MS
   * share one round: under load the token endpoint commits all the time, and a round for each commit would compete
   * with it for connections.
   */
  eventsCommitted (): void {
    if (this.#idle || this.#soon !== undefined) return
    this.#soon = setTimeout(() => {
      this.#soon = undefined
      this.#again = true
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
    this.#wakeUp?.()
    const abort = setTimeout(() => { for (const controller of this.#inFlight) controller.abort() }, graceMs)
    try {
      await this.#running
    } finally {
      clearTimeout(abort)
    }
  }

  async #loop (): Promise<void> {
    while (!this.#stopping) {
      this.#again = false
      try {
        await this.#round()
        if (this.#failing) this.deps.log.info('webhook delivery worker recovered')
        this.#failing = false
      } catch (error) {
        // The database is away, most likely: say it once, then keep trying each interval.
        if (!this.#failing) this.deps.log.warn({ err: { message: (error as Error).message, code: (error as { code?: string }).code } }, 'webhook delivery round failed: retrying')
        this.#failing = true
      }
      if (this.#stopping || this.#again) continue
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.deps.config.webhooks.pollIntervalMs)
        this.#wakeUp = () => { clearTimeout(timer); resolve() }
      })
      this.#wakeUp = undefined
    }
  }

  /**
   * One round: in one transaction per organization, lease the subscriptions no other worker holds, read the trail
   * once after the lowest of their cursors into their deliveries, and let go of those with nothing due; then serve
   * the others, each on its own.
   */
  async #round (): Promise<void> {
    let leased = 0
    for (const orgId of await activeOrganizationIds(this.deps.sql)) {
      if (this.#stopping) return
      const due = await inOrganization(this.deps.sql, orgId, async (tx) => {
        const claimed = await claimSubscriptions(tx, this.owner, this.#leaseMs, CLAIM_LIMIT)
        leased += claimed.length
        if (claimed.length === 0) return []
        if (await this.#enqueueAll(tx, claimed)) this.#again = true
        const dueIds = new Set(await subscriptionsWithDueDelivery(tx, claimed.map((subscription) => subscription.id)))
        const idle = claimed.filter((subscription) => !dueIds.has(subscription.id)).map((subscription) => subscription.id)
        if (idle.length > 0) await releaseLeases(tx, idle, this.owner)
        return claimed.filter((subscription) => dueIds.has(subscription.id))
      })
      await Promise.all(due.map(async (subscription) => { await this.#serve(orgId, subscription.id) }))
    }
    this.#idle = leased === 0
  }

  /**
   * Reads the trail once, after the lowest cursor of `subscriptions`, into the deliveries of each (the events after
   * its own cursor that it names) and moves every cursor past what was read. Whether there is more to read.
   */
  async #enqueueAll (tx: Queryable, subscriptions: SubscriptionRow[]): Promise<boolean> {
    const lowest = subscriptions.reduce((low, subscription) => (BigInt(subscription.after_seq) < BigInt(low) ? subscription.after_seq : low), subscriptions[0]?.after_seq ?? '0')
    const events = await readChain(tx, { afterSeq: lowest, limit: ENQUEUE_BATCH })
    const last = events.at(-1)
    if (last === undefined) return false
    const rows = subscriptions.flatMap((subscription) => deliveriesOf(subscription, events))
    await insertDeliveries(tx, rows)
    await advanceCursors(tx, subscriptions.map((subscription) => subscription.id), last.seq)
    return events.length === ENQUEUE_BATCH
  }

  /** One subscription's turn, under its lease: enqueue, then deliver in order until nothing is due. */
  async #serve (orgId: string, subscriptionId: string): Promise<void> {
    try {
      let turn = await this.#enqueue(orgId, subscriptionId)
      while (turn !== undefined && !this.#stopping) {
        if (turn.head === undefined) {
          if (!turn.more) return
          turn = await this.#enqueue(orgId, subscriptionId)
          continue
        }
        if (turn.head.next_attempt_at !== null && turn.head.next_attempt_at.getTime() > Date.now()) return
        // The attempt's own transaction hands over the next pending delivery; the trail is read when none is left.
        const next = await this.#attempt(orgId, turn.subscription, turn.head)
        turn = next?.head === undefined && next !== undefined ? await this.#enqueue(orgId, subscriptionId) : next
      }
    } finally {
      await inOrganization(this.deps.sql, orgId, async (tx) => { await releaseLeases(tx, [subscriptionId], this.owner) }).catch(() => {
        // The lease runs out by itself.
      })
    }
  }

  /**
   * Renews the lease, reads the trail after the cursor into deliveries and moves the cursor, in one transaction;
   * returns the subscription as it now is and its oldest pending delivery. Undefined when the lease was lost or the
   * subscription deleted or disabled meanwhile.
   */
  async #enqueue (orgId: string, subscriptionId: string): Promise<Turn | undefined> {
    return await inOrganization(this.deps.sql, orgId, async (tx) => {
      if (!await renewLease(tx, subscriptionId, this.owner, this.#leaseMs)) return undefined
      const subscription = await findSubscription(tx, subscriptionId)
      if (subscription === undefined || !subscription.enabled) return undefined
      const events = await readChain(tx, { afterSeq: subscription.after_seq, limit: ENQUEUE_BATCH })
      const last = events.at(-1)
      if (last !== undefined) {
        await insertDeliveries(tx, deliveriesOf(subscription, events))
        await advanceCursors(tx, [subscriptionId], last.seq)
      }
      return { subscription, head: await headDelivery(tx, subscriptionId), more: events.length === ENQUEUE_BATCH }
    })
  }

  /**
   * One attempt of the head delivery and what follows from it: the next turn when the subscription goes on to its
   * next delivery, undefined when it waits (a retry, a disabling, a shutdown, a lost lease).
   */
  async #attempt (orgId: string, subscription: SubscriptionRow, delivery: DeliveryRow): Promise<Turn | undefined> {
    const { config, metrics, log } = this.deps
    if (delivery.attempts === 0) metrics.webhookLag.observe(Math.max(0, Date.now() - delivery.event_at.getTime()) / 1000)
    let outcome: AttemptOutcome
    const controller = new AbortController()
    try {
      const kek = this.deps.keyEncryptionKey
      if (kek === undefined) throw new EnvelopeError('KEY_ENCRYPTION_KEY is not set')
      const headers = signedHeaders(secretsOf(kek, subscription), delivery.message_id, delivery.payload)
      this.#inFlight.add(controller)
      const response = await outboundRequest(subscription.url, {
        method: 'POST',
        headers,
        body: delivery.payload,
        timeoutMs: config.webhooks.timeoutMs,
        maxResponseBytes: MAX_RESPONSE_BYTES,
        allowPrivateNetworks: config.webhooks.allowPrivateNetworks,
        signal: controller.signal,
        lookup: this.lookup
      })
      outcome = outcomeOfResponse(response, MAX_RETRY_AFTER_MS)
    } catch (error) {
      // Shutting down: not an attempt of the receiver's; left pending for the next worker.
      if (controller.signal.aborted) return undefined
      if (error instanceof EnvelopeError) {
        log.error({ webhookId: subscription.id, err: { message: error.message } }, 'webhook signing secret cannot be opened: is KEY_ENCRYPTION_KEY the one that sealed it?')
        outcome = { kind: 'failure', statusCode: null, error: 'the signing secret cannot be opened (KEY_ENCRYPTION_KEY changed?)', metric: 'refused' }
      } else {
        outcome = outcomeOfError(error as Error)
      }
    } finally {
      this.#inFlight.delete(controller)
    }
    metrics.webhookAttempts.inc({ outcome: outcome.kind === 'failure' ? outcome.metric : outcome.kind })
    return await this.#record(orgId, subscription, delivery, outcome)
  }

  /**
   * Records an attempt's outcome (the delivery, the subscription's failure streak, a disabling and its audit event)
   * and, when the subscription goes on, renews its lease and reads its next pending delivery, in one transaction.
   */
  async #record (orgId: string, subscription: SubscriptionRow, delivery: DeliveryRow, outcome: AttemptOutcome): Promise<Turn | undefined> {
    const { config, metrics, log } = this.deps
    const now = new Date()
    return await inOrganization(this.deps.sql, orgId, async (tx) => {
      const current = await findSubscription(tx, subscription.id, true)
      if (current === undefined) return undefined
      const goOn = async (): Promise<Turn | undefined> => {
        if (!current.enabled || !await renewLease(tx, current.id, this.owner, this.#leaseMs)) return undefined
        return { subscription: current, head: await headDelivery(tx, current.id), more: false }
      }
      if (outcome.kind === 'success') {
        await recordAttempt(tx, delivery.id, { status: 'succeeded', last_status_code: outcome.statusCode, last_error: null, next_attempt_at: null, completed_at: now })
        if (current.failing_since !== null) await updateSubscription(tx, current.id, { failing_since: null })
        metrics.webhookDeliveries.inc({ outcome: 'succeeded' })
        return await goOn()
      }
      if (outcome.kind === 'gone') {
        await recordAttempt(tx, delivery.id, { status: 'failed', last_status_code: 410, last_error: 'HTTP 410: the receiver is gone', next_attempt_at: null, completed_at: now })
        metrics.webhookDeliveries.inc({ outcome: 'failed' })
        await this.#disable(tx, current, 'gone', { status_code: 410 })
        return undefined
      }
      const delay = nextDelayMs(delivery.attempts + 1, config.webhooks.retryScheduleMs, outcome.retryAfterMs)
      const failingSince = current.failing_since ?? now
      await recordAttempt(tx, delivery.id, delay === undefined
        ? { status: 'failed', last_status_code: outcome.statusCode, last_error: outcome.error, next_attempt_at: null, completed_at: now }
        : { status: 'pending', last_status_code: outcome.statusCode, last_error: outcome.error, next_attempt_at: new Date(now.getTime() + delay), completed_at: null })
      log.debug({ webhookId: current.id, deliveryId: delivery.id, attempt: delivery.attempts + 1, statusCode: outcome.statusCode, error: outcome.error, retryInMs: delay ?? null }, 'webhook delivery attempt failed')
      if (delay === undefined) metrics.webhookDeliveries.inc({ outcome: 'failed' })
      if (now.getTime() - failingSince.getTime() >= config.webhooks.disableAfterMs) {
        await this.#disable(tx, current, 'failing', { failing_since: failingSince.toISOString() })
        return undefined
      }
      if (current.failing_since === null) await updateSubscription(tx, current.id, { failing_since: failingSince })
      // A delivery given up lets the next one go; one that waits for its retry holds the others back (order).
      return delay === undefined ? await goOn() : undefined
    })
  }

  async #disable (tx: Queryable, subscription: SubscriptionRow, reason: 'gone' | 'failing', details: Record<string, unknown>): Promise<void> {
    await updateSubscription(tx, subscription.id, { enabled: false, disabled_reason: reason })
    await this.deps.audit.recordIn(tx, disabledEvent(subscription, reason, details))
    this.deps.log.warn({ webhookId: subscription.id, reason }, 'webhook subscription disabled')
  }
}


