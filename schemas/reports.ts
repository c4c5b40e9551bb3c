import { Type, type Static } from 'typebox'
import { AgentStatusSchema } from './agents.js'
import { TextSchema, UuidSchema } from './common.js'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])
const NullableString = Type.Union([Type.String(), Type.Null()])

/** The flags an access review raises on an agent (docs/devops/compliance.md says when each is raised). */
export const ACCESS_REVIEW_FLAGS = ['never_used', 'stale', 'credential_too_old', 'no_owner', 'admin_scopes', 'admin_granted_recently'] as const
export type AccessReviewFlag = typeof ACCESS_REVIEW_FLAGS[number]

export const ReviewDecisionSchema = Type.Union([Type.Literal('keep'), Type.Literal('revoke')], {
  description: 'keep: the agent keeps its access. revoke: the agent is suspended at once (its tokens die), as a PATCH to suspended would'
})

export const ReviewBodySchema = Type.Object({
  agent_id: UuidSchema,
  decision: ReviewDecisionSchema,
  note: Type.Optional(TextSchema({ maxLength: 1024, description: 'Why; recorded in the audit event' }))
}, { additionalProperties: false })
export type ReviewBody = Static<typeof ReviewBodySchema>

export const ReviewSchema = Type.Object({
  agent_id: Type.String({ format: 'uuid' }),
  decision: ReviewDecisionSchema,
  note: NullableString,
  reviewer: Type.String({ description: 'The client_id of the reviewer' }),
  reviewed_at: Timestamp,
  status: Type.String({ description: 'The agent\'s status after the decision' })
}, { title: 'Review' })
export type Review = Static<typeof ReviewSchema>

export const AccessReviewQuerySchema = Type.Object({
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Start of the review period (RFC 3339): admin_granted_recently looks at grants from here on. Default: REVIEW_STALE_DAYS ago' }))
}, { additionalProperties: false })
export type AccessReviewQuery = Static<typeof AccessReviewQuerySchema>

const ReviewedCredentialSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  type: Type.String(),
  created_at: Timestamp,
  created_by: Type.Union([Type.String(), Type.Null()], { description: 'The actor of its credential.created event (null once pruned, or for the bootstrap credential)' }),
  last_used_at: NullableTimestamp,
  expires_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
  live: Type.Boolean({ description: 'Neither revoked nor expired' })
})

const FederatedTrustSchema = Type.Object({
  credential_id: Type.String({ format: 'uuid' }),
  issuer: Type.String(),
  subject: Type.String(),
  audience: NullableString,
  claims: Type.Object({}, { additionalProperties: true }),
  live: Type.Boolean()
})

const DelegationSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  agent_id: Type.String({ format: 'uuid', description: 'the subject, who granted it' }),
  actor_id: Type.String({ format: 'uuid', description: 'who may act for the subject' }),
  scopes: Type.Array(Type.String()),
  created_at: Timestamp,
  created_by: Type.String(),
  expires_at: NullableTimestamp,
  live: Type.Boolean()
})

const LastReviewSchema = Type.Union([Type.Object({
  decision: Type.String(),
  note: NullableString,
  reviewer: Type.String(),
  reviewed_at: Timestamp
}), Type.Null()])

export const AccessReviewAgentSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  client_id: Type.String(),
  name: Type.String(),
  status: AgentStatusSchema,
  owner: NullableString,
  scopes: Type.Array(Type.String()),
  resources: Type.Array(Type.String()),
  created_at: Timestamp,
  last_used_at: NullableTimestamp,
  flags: Type.Array(Type.String()),
  credentials: Type.Array(ReviewedCredentialSchema),
  federated_trusts: Type.Array(FederatedTrustSchema),
  delegations: Type.Object({
    granted: Type.Array(DelegationSchema, { description: 'Agents this one lets act for it (token exchange)' }),
    received: Type.Array(DelegationSchema, { description: 'Agents this one may act for' })
  }, { description: 'Delegations the agent grants and receives (POST /api/v1/agents/{id}/delegations)' }),
  acts_for_people: Type.Array(Type.Object({
    trust_id: Type.String({ format: 'uuid' }),
    issuer: Type.String(),
    scopes: Type.Array(Type.String())
  }), { description: 'Subject trusts that let this agent act for people signed in at an external issuer' }),
  last_review: LastReviewSchema
})
export type AccessReviewAgent = Static<typeof AccessReviewAgentSchema>

export const AccessReviewReportSchema = Type.Object({
  generated_at: Timestamp,
  issuer: Type.String(),
  period: Type.Object({ since: Timestamp, until: Timestamp }),
  thresholds: Type.Object({
    review_stale_days: Type.Number(),
    credential_max_age_days: Type.Union([Type.Number(), Type.Null()])
  }),
  agents: Type.Array(AccessReviewAgentSchema)
}, { title: 'AccessReviewReport' })
export type AccessReviewReport = Static<typeof AccessReviewReportSchema>
