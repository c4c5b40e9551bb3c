import { Type, type Static, type TString } from 'typebox'
import { SCOPE_TOKEN } from '../src/scopes.js'
import { CursorSchema, JSON_MAX_DEPTH, PageSchema, StorableJsonObjectSchema, TextSchema, UuidSchema } from './common.js'

/** Bounds of an agent's free-form metadata: a handful of labels, not a document store. */
export const METADATA_MAX_KEYS = 32
export const METADATA_MAX_BYTES = 8 * 1024
/** How many scopes one agent may be allowed. */
export const AGENT_MAX_SCOPES = 100
/**
 * How long an agent's scopes may be together, as the space-separated `scope` claim: with the bounds on resources,
 * this keeps the largest token the server can issue within what its own verification accepts (see issuer.ts).
 */
export const AGENT_SCOPES_MAX_LENGTH = 2048
/** How many resource indicators (RFC 8707) one agent may name, and how long each may be. */
export const AGENT_MAX_RESOURCES = 10
export const RESOURCE_MAX_LENGTH = 256

export const AgentStatusSchema = Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('decommissioned')], {
  description: 'active: may obtain tokens. suspended: refused tokens until reactivated. decommissioned: final; every credential revoked, the record kept read-only'
})
export type AgentStatus = Static<typeof AgentStatusSchema>

const NameSchema = TextSchema({ minLength: 1, maxLength: 128, description: 'A human-readable name, 1–128 characters' })
const DescriptionSchema = TextSchema({ maxLength: 1024, description: 'Free text; null clears it in a PATCH' })
const OwnerSchema = TextSchema({ maxLength: 256, description: 'Who is responsible for the agent (a team, a person, a system); null clears it in a PATCH' })

/**
 * A string or null, as one JSON Schema `type` array rather than anyOf: with Fastify's type coercion an anyOf would
 * turn null into "" through its string branch.
 */
function nullable (schema: TString) {
  return Type.Unsafe<string | null>({ ...schema, type: ['string', 'null'] })
}

export const ScopeSchema = Type.String({ pattern: SCOPE_TOKEN.source, description: 'An RFC 6749 scope-token, e.g. weather:read' })

const ScopesSchema = Type.Array(ScopeSchema, {
  maxItems: AGENT_MAX_SCOPES,
  uniqueItems: true,
  description: `Every scope this agent may ever be granted, at most ${AGENT_SCOPES_MAX_LENGTH} characters together; a token request can narrow, never widen them`
})

/**
 * An RFC 8707 resource indicator: an absolute URI without a fragment, http(s) with a host or a URN, of RFC 3986
 * characters only (nothing that needs escaping in a JWT, no javascript: or data: URIs).
 */
export const RESOURCE_URI = /^(?:https?:\/\/[A-Za-z0-9\-._~!$&'()*+,;=%:@[\]]+(?:[/?][A-Za-z0-9\-._~!$&'()*+,;=%:@/?]*)?|urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9\-._~!$&'()*+,;=%:@/?]+)$/

export const ResourceSchema = Type.String({
  maxLength: RESOURCE_MAX_LENGTH,
  format: 'uri',
  pattern: RESOURCE_URI.source,
  description: `An absolute http(s) URI or URN without a fragment, at most ${RESOURCE_MAX_LENGTH} characters, e.g. https://api.example.com`
})

const ResourcesSchema = Type.Array(ResourceSchema, {
  maxItems: AGENT_MAX_RESOURCES,
  uniqueItems: true,
  description: 'The RFC 8707 resources (token audiences) this agent may ask for, besides the default audience (TOKEN_AUDIENCE); matched exactly. Removing one kills the tokens issued before'
})

/** How many audience names (for workload JWTs) one agent may name, and how long each may be. */
export const AGENT_MAX_AUDIENCES = 10
export const AUDIENCE_MAX_LENGTH = 256

/**
 * An audience name for a workload JWT, as a cloud expects it in aud: sts.amazonaws.com, api://AzureADTokenExchange,
 * //iam.googleapis.com/projects/…/providers/…, or a URI: printable ASCII without spaces, quotes or backslashes.
 */
export const AudienceSchema = Type.String({
  minLength: 1,
  maxLength: AUDIENCE_MAX_LENGTH,
  pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$',
  description: `An audience name, at most ${AUDIENCE_MAX_LENGTH} printable characters without spaces, e.g. sts.amazonaws.com`
})

const AudiencesSchema = Type.Array(AudienceSchema, {
  maxItems: AGENT_MAX_AUDIENCES,
  uniqueItems: true,
  description: 'Audience names that are not necessarily URIs (sts.amazonaws.com, api://AzureADTokenExchange) this agent may ask a short-lived workload JWT for, by token exchange with requested_token_type urn:ietf:params:oauth:token-type:jwt; matched exactly'
})

const MetadataSchema = StorableJsonObjectSchema({
  maxProperties: METADATA_MAX_KEYS,
  description: `Free-form labels: at most ${METADATA_MAX_KEYS} keys, ${METADATA_MAX_BYTES} bytes as JSON and ${JSON_MAX_DEPTH} levels of nesting. Never put secrets here: metadata is returned to every agents:read caller`
})
export type AgentMetadata = Static<typeof MetadataSchema>

const DpopBoundSchema = Type.Boolean({
  description: 'RFC 9449 §5.2: when true, the agent gets tokens only with a DPoP proof, and every one is bound to the proof\'s key (token_type DPoP, cnf.jkt). Turning it on kills the agent\'s earlier tokens'
})

export const AgentSchema = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The agent id (UUIDv7); the `sub` of its tokens' }),
  client_id: Type.String({ description: 'The OAuth client_id; the same across credential rotations' }),
  did: Type.String({ description: 'Its did:web (W3C DID 1.0): {issuer\'s DID}:agents:{id}, resolved at {issuer}/agents/{id}/did.json to its live private_key_jwt keys' }),
  name: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  owner: Type.Union([Type.String(), Type.Null()]),
  scopes: Type.Array(Type.String()),
  resources: Type.Array(Type.String()),
  audiences: Type.Array(Type.String()),
  status: AgentStatusSchema,
  dpop_bound_access_tokens: Type.Boolean({ description: 'Whether every token of the agent must be bound to a DPoP key (RFC 9449)' }),
  // Not Type.Record: its key pattern ^.*$ does not match a key holding a line break, and the serializer would drop
  // that member from the answer while it is stored.
  metadata: Type.Object({}, { additionalProperties: true }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' })
}, { title: 'Agent' })
export type Agent = Static<typeof AgentSchema>

export const CreateAgentBodySchema = Type.Object({
  name: NameSchema,
  description: Type.Optional(DescriptionSchema),
  owner: Type.Optional(OwnerSchema),
  scopes: Type.Optional(ScopesSchema),
  resources: Type.Optional(ResourcesSchema),
  audiences: Type.Optional(AudiencesSchema),
  dpop_bound_access_tokens: Type.Optional(DpopBoundSchema),
  metadata: Type.Optional(MetadataSchema)
}, { additionalProperties: false })
export type CreateAgentBody = Static<typeof CreateAgentBodySchema>

export const UpdateAgentBodySchema = Type.Object({
  name: Type.Optional(NameSchema),
  description: Type.Optional(nullable(DescriptionSchema)),
  owner: Type.Optional(nullable(OwnerSchema)),
  scopes: Type.Optional(ScopesSchema),
  resources: Type.Optional(ResourcesSchema),
  audiences: Type.Optional(AudiencesSchema),
  dpop_bound_access_tokens: Type.Optional(DpopBoundSchema),
  metadata: Type.Optional(MetadataSchema),
  status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('suspended')], {
    description: 'suspended refuses new tokens at once on every replica; active reactivates a suspended agent. Decommission with DELETE'
  }))
}, {
  additionalProperties: false,
  minProperties: 1,
  description: 'Only the members present change; metadata is replaced as a whole. A decommissioned agent is read-only: any PATCH is a 409'
})
export type UpdateAgentBody = Static<typeof UpdateAgentBodySchema>

export const AgentParamsSchema = Type.Object({ id: UuidSchema })
export type AgentParams = Static<typeof AgentParamsSchema>

export const ListAgentsQuerySchema = Type.Object({
  status: Type.Optional(AgentStatusSchema),
  owner: Type.Optional(TextSchema({ maxLength: 256 })),
  client_id: Type.Optional(TextSchema({ maxLength: 128, description: 'Only the agent with this OAuth client_id (as logs and audit events show it)' })),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(CursorSchema)
}, { additionalProperties: false })
export type ListAgentsQuery = Static<typeof ListAgentsQuerySchema>

export const AgentPageSchema = PageSchema(AgentSchema)
export type AgentPage = Static<typeof AgentPageSchema>

export const UsageQuerySchema = Type.Object({
  month: Type.Optional(Type.String({ pattern: '^[0-9]{4}-(0[1-9]|1[0-2])$', description: 'YYYY-MM (UTC); default: the current month' }))
}, { additionalProperties: false })
export type UsageQuery = Static<typeof UsageQuerySchema>

export const UsageSchema = Type.Object({
  agent_id: Type.String({ format: 'uuid' }),
  month: Type.String({ description: 'YYYY-MM (UTC)' }),
  tokens_issued: Type.Integer({ minimum: 0 })
}, { title: 'Usage' })
export type Usage = Static<typeof UsageSchema>
