import { Type, type Static } from 'typebox'
import { ScopeSchema } from './agents.js'
import { TimestampSchema, UuidSchema } from './common.js'

/** How many scopes one delegation may carry (an agent holds at most AGENT_MAX_SCOPES). */
const DELEGATION_MAX_SCOPES = 100

/** A delegation: the subject agent lets the actor act for it, through RFC 8693 token exchange, with these scopes. */
export const DelegationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  agent_id: Type.String({ format: 'uuid', description: 'The subject: the agent acted for (the sub of the exchanged tokens)' }),
  actor_id: Type.String({ format: 'uuid', description: 'The agent that may act for it (act.sub of the exchanged tokens)' }),
  scopes: Type.Array(Type.String(), { description: 'The most an exchanged token may carry; each exchange narrows further' }),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  created_by: Type.String({ description: 'The client_id of the caller that granted it' })
}, { title: 'Delegation' })
export type Delegation = Static<typeof DelegationSchema>

export const CreateDelegationBodySchema = Type.Object({
  actor_id: UuidSchema,
  scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: DELEGATION_MAX_SCOPES, uniqueItems: true, description: 'Scopes the subject agent holds; management scopes only those the caller holds too' }),
  expires_at: Type.Optional(TimestampSchema('When the delegation stops allowing exchanges; must be in the future. Absent: until removed'))
}, { additionalProperties: false })
export type CreateDelegationBody = Static<typeof CreateDelegationBodySchema>

export const DelegationListSchema = Type.Object({ items: Type.Array(DelegationSchema) })
export type DelegationList = Static<typeof DelegationListSchema>

export const DelegationParamsSchema = Type.Object({ id: UuidSchema, delegation_id: UuidSchema })
export type DelegationParams = Static<typeof DelegationParamsSchema>
