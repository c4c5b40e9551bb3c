import { Type, type Static } from 'typebox'
import { CursorSchema, PageSchema, TextSchema, UuidSchema } from './common.js'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

/** A receiver's URL: https (http too with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true); the service checks the rest. */
const UrlSchema = TextSchema({ minLength: 1, maxLength: 2048, description: 'Where deliveries are POSTed: an https URL whose host resolves to a public address (http and private addresses only with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)' })
const EventsSchema = Type.Array(TextSchema({ minLength: 1, maxLength: 64 }), {
  minItems: 1,
  maxItems: 64,
  uniqueItems: true,
  description: 'Audit event types to deliver (agent.created, credential.revoked, …), or ["*"] for every type. An unknown type is a 400 that lists the valid ones'
})
const DescriptionSchema = TextSchema({ maxLength: 1024, description: 'Free text' })

/** A subscription as shown: never its secret. */
export const WebhookSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  url: Type.String(),
  events: Type.Array(Type.String()),
  description: Type.Union([Type.String(), Type.Null()]),
  enabled: Type.Boolean(),
  disabled_reason: Type.Union([Type.String(), Type.Null()], { description: 'Why the server disabled it: gone (the receiver answered 410) or failing (no success for WEBHOOK_DISABLE_AFTER_DAYS). Null when enabled or disabled by a caller' }),
  previous_secret_expires_at: Type.Union([Timestamp, Type.Null()], { description: 'After a rotation: until when deliveries are signed by the previous secret too' }),
  created_at: Timestamp,
  updated_at: Timestamp
}, { title: 'Webhook' })
export type Webhook = Static<typeof WebhookSchema>

/** The two answers that carry the signing secret: creation and rotation. */
export const WebhookWithSecretSchema = Type.Object({
  ...WebhookSchema.properties,
  secret: Type.String({ description: 'The signing secret, whsec_ followed by base64: shown only in this response; AgentIdP keeps it encrypted under KEY_ENCRYPTION_KEY' })
}, { title: 'WebhookWithSecret' })
export type WebhookWithSecret = Static<typeof WebhookWithSecretSchema>

export const CreateWebhookBodySchema = Type.Object({
  url: UrlSchema,
  events: EventsSchema,
  description: Type.Optional(DescriptionSchema)
}, { additionalProperties: false })
export type CreateWebhookBody = Static<typeof CreateWebhookBodySchema>

export const UpdateWebhookBodySchema = Type.Object({
  url: Type.Optional(UrlSchema),
  events: Type.Optional(EventsSchema),
  description: Type.Optional(Type.Union([DescriptionSchema, Type.Null()])),
  enabled: Type.Optional(Type.Boolean({ description: 'false stops deliveries (pending ones wait); true resumes them where they stopped and clears disabled_reason' }))
}, { additionalProperties: false, minProperties: 1 })
export type UpdateWebhookBody = Static<typeof UpdateWebhookBodySchema>

export const WebhookParamsSchema = Type.Object({ id: UuidSchema })
export const DeliveryParamsSchema = Type.Object({ id: UuidSchema, delivery_id: UuidSchema })

export const WebhookListSchema = Type.Object({ items: Type.Array(WebhookSchema) })

/** One delivery of one event to one subscription, with the outcome of its attempts so far. */
export const DeliverySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  message_id: Type.String({ description: 'The webhook-id header: the same on every attempt and on a redelivery' }),
  event_type: Type.String(),
  event_seq: Type.Union([Type.String(), Type.Null()], { description: 'The audit event\'s seq; null for webhook.test' }),
  status: Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')]),
  attempts: Type.Integer(),
  last_status_code: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status of the last attempt; null when it got none (refused, timeout, network error)' }),
  last_error: Type.Union([Type.String(), Type.Null()]),
  next_attempt_at: NullableTimestamp,
  created_at: Timestamp,
  completed_at: NullableTimestamp
}, { title: 'WebhookDelivery' })
export type Delivery = Static<typeof DeliverySchema>

export const ListDeliveriesQuerySchema = Type.Object({
  status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('succeeded'), Type.Literal('failed')])),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(CursorSchema)
}, { additionalProperties: false })
export type ListDeliveriesQuery = Static<typeof ListDeliveriesQuerySchema>

export const DeliveryPageSchema = PageSchema(DeliverySchema)
export type DeliveryPage = Static<typeof DeliveryPageSchema>
