import type { FastifyInstance } from 'fastify'
import { decodeCursor, encodeCursor } from '../../src/cursor.js'
import { inOrganization, type Queryable } from '../../src/database.js'
import { open, seal } from '../../src/envelope.js'
import { badRequest, conflict, notFound, ProblemError } from '../../src/errors.js'
import { newId } from '../../src/ids.js'
import { checkOutboundUrl, OutboundRefused } from '../../src/outbound.js'
import {
  type CreateWebhookBody, type Delivery, type DeliveryPage, type ListDeliveriesQuery, type UpdateWebhookBody, type Webhook,
  type WebhookWithSecret
} from '../../schemas/webhooks.js'
import { AUDIT_EVENT_TYPES, lastSeq, type AuditActor, type AuditEvent } from '../audit/public.js'
import { generateSecret } from './signing.js'
import {
  deleteSubscription, findDelivery, findSubscription, insertDeliveries, insertSubscription, listDeliveries, listSubscriptions,
  makePendingDue, updateSubscription, type DeliveryRow, type SubscriptionChanges, type SubscriptionRow
} from './repository.js'

// A deliveries page continues after a delivery's position: a positive integer.
const WEBHOOK_CURSOR = /^[1-9]\d{0,17}$/

/** What the webhooks service and worker use of the app. */
export type WebhookDeps = Pick<FastifyInstance, 'sql' | 'audit' | 'config' | 'log' | 'keyEncryptionKey' | 'metrics'>

/** Every event type a subscription may name, and the wildcard. */
export const ALL_EVENTS = '*'
/** The event the test route sends; never an audit event, always delivered whatever the subscription names. */
export const TEST_EVENT = 'webhook.test'
/**
 * After a rotation, deliveries are signed by the previous secret too for this long (docs/guide/webhooks.md), so
 * receivers can switch to the new secret at their own pace without refusing a delivery.
 */
export const SECRET_ROTATION_OVERLAP_MS = 24 * 60 * 60 * 1000

const KNOWN_EVENTS: ReadonlySet<string> = new Set(AUDIT_EVENT_TYPES)

/** What seals a subscription's secret: bound to its organization and id, so a copy on another row does not open. */
export function secretContext (orgId: string, subscriptionId: string): string {
  return `webhook-secret:${orgId}:${subscriptionId}`
}

/** The signing secrets of a subscription at `now`: the current one, then the previous one during the overlap. */
export function secretsOf (kek: Buffer, row: SubscriptionRow, now = new Date()): string[] {
  const context = secretContext(row.org_id, row.id)
  const secrets = [open(kek, row.secret_sealed, context).toString('utf8')]
  if (row.previous_secret_sealed !== null && row.previous_secret_expires_at !== null && row.previous_secret_expires_at > now) {
    secrets.push(open(kek, row.previous_secret_sealed, context).toString('utf8'))
  }
  return secrets
}

/** Whether the subscription receives events of this type. */
export function subscribesTo (row: Pick<SubscriptionRow, 'events'>, type: string): boolean {
  return row.events.includes(ALL_EVENTS) || row.events.includes(type)
}

/** The API form of a subscription: never a secret. */
export function toWebhook (row: SubscriptionRow): Webhook {
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    description: row.description,
    enabled: row.enabled,
    disabled_reason: row.disabled_reason,
    previous_secret_expires_at: row.previous_secret_expires_at !== null && row.previous_secret_expires_at > new Date() ? row.previous_secret_expires_at.toISOString() : null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString()
  }
}

export function toDelivery (row: DeliveryRow): Delivery {
  return {
    id: row.id,
    message_id: row.message_id,
    event_type: row.event_type,
    event_seq: row.event_seq,
    status: row.status,
    attempts: row.attempts,
    last_status_code: row.last_status_code,
    last_error: row.last_error,
    next_attempt_at: row.next_attempt_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    completed_at: row.completed_at?.toISOString() ?? null
  }
}

/**
 * Where a receiver is, as audit events name it: scheme, host and port only. A receiver URL may carry a credential
 * in its path or query (many chat and paging services work that way), and an audit event never holds one.
 */
export function urlOrigin (url: string): string {
  return new URL(url).origin
}

function checkUrl (url: string, allowPrivateNetworks: boolean, location: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw badRequest('url is not a valid absolute URL', [{ location, message: 'must be an absolute https URL' }])
  }
  try {
    checkOutboundUrl(parsed, allowPrivateNetworks)
  } catch (error) {
    if (error instanceof OutboundRefused) throw badRequest(`url is refused: ${error.message}`, [{ location, message: error.message }])
    throw error
  }
  if (parsed.hash !== '') throw badRequest('url must not carry a fragment', [{ location, message: 'must not carry a fragment' }])
  return parsed.toString()
}

function checkEvents (events: string[], location: string): string[] {
  if (events.includes(ALL_EVENTS)) {
    if (events.length > 1) throw badRequest('"*" stands for every event type: give it alone', [{ location, message: 'must be ["*"] alone or a list of event types' }])
    return events
  }
  const unknown = events.filter((type) => !KNOWN_EVENTS.has(type))
  if (unknown.length > 0) {
    throw badRequest(`unknown event type ${unknown.join(', ')}: valid types are ${AUDIT_EVENT_TYPES.join(', ')}, or "*" for all`, [
      { location, message: `must be among ${AUDIT_EVENT_TYPES.join(', ')}, or ["*"]` }
    ])
  }
  return events
}

/** A sealing key is needed to store a secret: production without KEY_ENCRYPTION_KEY has none. */
function kekOf (deps: WebhookDeps): Buffer {
  if (deps.keyEncryptionKey === undefined) throw new ProblemError(503, 'KEY_ENCRYPTION_KEY is not set: webhook secrets cannot be stored encrypted, so no subscription can be created or rotated')
  return deps.keyEncryptionKey
}

async function existing (tx: Queryable, id: string, forUpdate = false): Promise<SubscriptionRow> {
  const row = await findSubscription(tx, id, forUpdate)
  if (row === undefined) throw notFound(`no webhook ${id}`)
  return row
}

/** The body of a webhook.test delivery. */
function testPayload (subscriptionId: string, at: Date): string {
  return JSON.stringify({ type: TEST_EVENT, timestamp: at.toISOString(), data: { webhook_id: subscriptionId } })
}

/**
 * Webhook subscriptions of an organization: each change is audited in its own transaction; secrets are generated
 * here, shown once and stored sealed. `wake` tells the delivery worker that something is due now.
 */
export function webhookService (deps: WebhookDeps, wake: () => void) {
  const allowPrivate = deps.config.webhooks.allowPrivateNetworks
  return {
    async create (orgId: string, body: CreateWebhookBody, actor: AuditActor): Promise<WebhookWithSecret> {
      const url = checkUrl(body.url, allowPrivate, 'body/url')
      const events = checkEvents(body.events, 'body/events')
      const kek = kekOf(deps)
      const id = newId()
      const secret = generateSecret()
      const row = await inOrganization(deps.sql, orgId, async (tx) => {
        // Only events after this one: a new subscription is not sent the history (see the guide on replay).
        const row = await insertSubscription(tx, {
          id,
          url,
          events,
          description: body.description ?? null,
          secret_sealed: seal(kek, Buffer.from(secret, 'utf8'), secretContext(orgId, id)),
          after_seq: await lastSeq(tx)
        })
        await deps.audit.recordIn(tx, { type: 'webhook.created', ...actor, data: { webhook_id: id, url_origin: urlOrigin(url), events } })
        return row
      })
      return { ...toWebhook(row), secret }
    },

    async list (orgId: string): Promise<{ items: Webhook[] }> {
      return { items: (await inOrganization(deps.sql, orgId, async (tx) => await listSubscriptions(tx))).map(toWebhook) }
    },

    async get (orgId: string, id: string): Promise<Webhook> {
      return toWebhook(await inOrganization(deps.sql, orgId, async (tx) => await existing(tx, id)))
    },

    /** Changes the members given. enabled true clears disabled_reason and the failure streak, and resumes at once. */
    async update (orgId: string, id: string, body: UpdateWebhookBody, actor: AuditActor): Promise<Webhook> {
      const url = body.url === undefined ? undefined : checkUrl(body.url, allowPrivate, 'body/url')
      const events = body.events === undefined ? undefined : checkEvents(body.events, 'body/events')
      const { row, resumed } = await inOrganization(deps.sql, orgId, async (tx) => {
        const current = await existing(tx, id, true)
        const changes: SubscriptionChanges = {}
        const data: Record<string, unknown> = { webhook_id: id }
        if (url !== undefined && url !== current.url) { changes.url = url; data.url_origin = { from: urlOrigin(current.url), to: urlOrigin(url) } }
        if (events !== undefined && JSON.stringify(events) !== JSON.stringify(current.events)) { changes.events = events; data.events = { from: current.events, to: events } }
        if (body.description !== undefined && body.description !== current.description) changes.description = body.description
        const resumed = body.enabled === true && !current.enabled
        if (body.enabled !== undefined && body.enabled !== current.enabled) {
          changes.enabled = body.enabled
          changes.disabled_reason = null
          changes.failing_since = null
          data.enabled = { from: current.enabled, to: body.enabled }
        }
        if (Object.keys(changes).length === 0) return { row: current, resumed: false }
        const row = await updateSubscription(tx, id, changes)
        if (resumed) await makePendingDue(tx, id)
        await deps.audit.recordIn(tx, { type: 'webhook.updated', ...actor, data: { ...data, fields: Object.keys(changes).filter((field) => !['disabled_reason', 'failing_since'].includes(field)) } })
        return { row, resumed }
      })
      if (resumed) wake()
      return toWebhook(row)
    },

    /** Deletes the subscription and its deliveries; pending ones are never sent. */
    async remove (orgId: string, id: string, actor: AuditActor): Promise<void> {
      await inOrganization(deps.sql, orgId, async (tx) => {
        const current = await existing(tx, id, true)
        await deleteSubscription(tx, id)
        await deps.audit.recordIn(tx, { type: 'webhook.deleted', ...actor, data: { webhook_id: id, url_origin: urlOrigin(current.url) } })
      })
    },

    /**
     * A new secret, shown once. The previous one keeps signing too (a second signature) for
     * SECRET_ROTATION_OVERLAP_MS; a rotation during an overlap ends the older secret at once.
     */
    async rotateSecret (orgId: string, id: string, actor: AuditActor): Promise<WebhookWithSecret> {
      const kek = kekOf(deps)
      const secret = generateSecret()
      const row = await inOrganization(deps.sql, orgId, async (tx) => {
        const current = await existing(tx, id, true)
        const overlapEnds = new Date(Date.now() + SECRET_ROTATION_OVERLAP_MS)
        const row = await updateSubscription(tx, id, {
          secret_sealed: seal(kek, Buffer.from(secret, 'utf8'), secretContext(orgId, id)),
          previous_secret_sealed: current.secret_sealed,
          previous_secret_expires_at: overlapEnds
        })
        await deps.audit.recordIn(tx, { type: 'webhook.secret_rotated', ...actor, data: { webhook_id: id, previous_secret_expires_at: overlapEnds.toISOString() } })
        return row
      })
      return { ...toWebhook(row), secret }
    },

    /** Queues a webhook.test delivery, after the subscription's pending ones. */
    async sendTest (orgId: string, id: string): Promise<Delivery> {
      const [delivery] = await inOrganization(deps.sql, orgId, async (tx) => {
        const current = await existing(tx, id)
        if (!current.enabled) throw conflict(`webhook ${id} is disabled: enable it (PATCH enabled true) before testing it`)
        const at = new Date()
        const deliveryId = newId()
        return await insertDeliveries(tx, [{ id: deliveryId, subscription_id: id, message_id: `msg_${deliveryId}`, event_type: TEST_EVENT, event_seq: null, event_at: at, payload: testPayload(id, at) }])
      })
      wake()
      return toDelivery(delivery as DeliveryRow)
    },

    async deliveries (orgId: string, id: string, query: ListDeliveriesQuery): Promise<DeliveryPage> {
      const beforePosition = query.cursor === undefined ? undefined : decodeCursor(query.cursor, WEBHOOK_CURSOR)
      const rows = await inOrganization(deps.sql, orgId, async (tx) => {
        await existing(tx, id)
        return await listDeliveries(tx, id, { status: query.status, beforePosition, limit: query.limit + 1 })
      })
      const items = rows.slice(0, query.limit)
      const last = items.at(-1)
      return { items: items.map(toDelivery), next_cursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.position) : null }
    },

    /**
     * Queues the delivery again, as a new delivery after the pending ones, with the same webhook-id and body: a
     * receiver that deduplicates on webhook-id sees it once. A delivery still pending is a 409: it is being retried.
     */
    async redeliver (orgId: string, id: string, deliveryId: string): Promise<Delivery> {
      const [delivery] = await inOrganization(deps.sql, orgId, async (tx) => {
        const current = await existing(tx, id)
        const original = await findDelivery(tx, id, deliveryId)
        if (original === undefined) throw notFound(`no delivery ${deliveryId} of webhook ${id}`)
        if (original.status === 'pending') throw conflict(`delivery ${deliveryId} is still pending: it is retried on its schedule`)
        if (!current.enabled) throw conflict(`webhook ${id} is disabled: enable it (PATCH enabled true) before redelivering`)
        return await insertDeliveries(tx, [{
          id: newId(), subscription_id: id, message_id: original.message_id, event_type: original.event_type,
          event_seq: original.event_seq, event_at: original.event_at, payload: original.payload
        }])
      })
      wake()
      return toDelivery(delivery as DeliveryRow)
    }
  }
}

export type WebhookService = ReturnType<typeof webhookService>

/** The audit event recorded when the server disables a subscription. */
export function disabledEvent (row: SubscriptionRow, reason: 'gone' | 'failing', details: Record<string, unknown>): AuditEvent {
  return { orgId: row.org_id, type: 'webhook.disabled', actor: 'system', ip: null, requestId: null, data: { webhook_id: row.id, url_origin: urlOrigin(row.url), reason, ...details } }
}
