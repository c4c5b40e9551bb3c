import { Type, type Static } from 'typebox'
import { CursorSchema, PageSchema, TextSchema, TimestampSchema, UuidSchema } from './common.js'

/** One event of the trail, with its place in the hash chain. */
export const AuditEventSchema = Type.Object({
  id: UuidSchema,
  seq: Type.Integer({ description: 'Position in the hash chain: 1, 2, 3, … with no gap' }),
  occurred_at: Type.String({ format: 'date-time', description: 'When the event was committed, to the millisecond; never earlier than the previous event' }),
  type: Type.String({ description: 'agent.created, token.issued, auth.failed, key.current, …' }),
  agent_id: Type.Union([UuidSchema, Type.Null()], { description: 'The agent the event is about, when there is one' }),
  actor: Type.String({ description: 'The authenticated agent or client that acted, "anonymous", or "system" (start-up)' }),
  ip: Type.Union([Type.String(), Type.Null()]),
  request_id: Type.Union([Type.String(), Type.Null()]),
  data: Type.Object({}, { additionalProperties: true, description: 'Event details; never a secret or a token' }),
  prev_hash: Type.String({ description: 'The hash of the event before (64 zeros for the first)' }),
  hash: Type.String({ description: 'SHA-256 hex of prev_hash, "\\n" and the canonical JSON (keys sorted, no spaces) of {seq (string), id, occurred_at, type, agent_id, actor, ip, request_id, data}' })
}, { title: 'Audit event' })
export type AuditEventItem = Static<typeof AuditEventSchema>

const TypeListSchema = Type.String({
  pattern: '^[a-z_]+\\.[a-z_]+(,[a-z_]+\\.[a-z_]+)*$',
  maxLength: 512,
  description: 'An event type, or several separated by commas'
})

/** Time bounds shared by the list and the export: since is inclusive, until exclusive. */
const RangeProperties = {
  since: Type.Optional(TimestampSchema('Only events at or after this instant')),
  until: Type.Optional(TimestampSchema('Only events before this instant'))
}

export const AuditEventQuerySchema = Type.Object({
  type: Type.Optional(Type.Array(TypeListSchema, { maxItems: 20, description: 'Repeat `type=` or separate with commas; an event of any of them matches' })),
  agent_id: Type.Optional(UuidSchema),
  actor: Type.Optional(TextSchema({ minLength: 1, maxLength: 256 })),
  ...RangeProperties,
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  cursor: Type.Optional(CursorSchema)
}, { additionalProperties: false })
export type AuditEventQuery = Static<typeof AuditEventQuerySchema>

export const AuditExportQuerySchema = Type.Object(RangeProperties, { additionalProperties: false })
export type AuditExportQuery = Static<typeof AuditExportQuerySchema>

export const AuditEventPageSchema = PageSchema(AuditEventSchema)
