import { Type, type Static } from 'typebox'
import { ScopeSchema } from './agents.js'
import { StorableJsonObjectSchema, TextSchema, UuidSchema } from './common.js'

/** How many agents one trust lets act for its issuer's subjects. */
const MAX_ACTORS = 20

const SubjectIdSchema = Type.Union([Type.Literal('issuer_sub'), Type.Literal('pairwise')], {
  description: 'How the exchanged token\'s sub names the person: issuer_sub, {issuer}#{sub}; pairwise, urn:agentidp:pairwise:{base64url(SHA-256(trust id, issuer, sub))}, the same person under another id for each trust'
})

const ActorSchema = Type.Object({
  agent_id: UuidSchema,
  scopes: Type.Array(ScopeSchema, { minItems: 1, maxItems: 100, uniqueItems: true, description: 'Application scopes the agent holds; the most a token for a person may carry' })
}, { additionalProperties: false })

const ActorOutSchema = Type.Object({ agent_id: Type.String({ format: 'uuid' }), scopes: Type.Array(Type.String()) })

/** An external issuer whose tokens name people, and the agents allowed to act for those people (token exchange). */
export const SubjectTrustSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  issuer: Type.String(),
  audience: Type.Union([Type.String(), Type.Null()]),
  claims: Type.Object({}, { additionalProperties: true }),
  jwks_uri: Type.Union([Type.String(), Type.Null()]),
  jwks: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
  subject_id: SubjectIdSchema,
  actors: Type.Array(ActorOutSchema),
  created_at: Type.String({ format: 'date-time' }),
  created_by: Type.String()
}, { title: 'SubjectTrust' })
export type SubjectTrust = Static<typeof SubjectTrustSchema>

export const CreateSubjectTrustBodySchema = Type.Object({
  issuer: TextSchema({ minLength: 1, maxLength: 1024, description: 'The external issuer (iss of its tokens), matched exactly' }),
  audience: Type.Optional(TextSchema({ minLength: 1, maxLength: 1024, description: 'What its tokens\' aud must hold; default: this issuer' })),
  claims: Type.Optional(StorableJsonObjectSchema({ description: 'Further claims its tokens must carry, matched exactly (at most 16), e.g. {"tid": "…"}' })),
  jwks_uri: Type.Optional(TextSchema({ minLength: 1, maxLength: 2048, description: 'Its JWK Set URL; default: the jwks_uri of its OIDC discovery' })),
  jwks: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'Its public keys as a JWK Set; then nothing is fetched' })),
  subject_id: Type.Optional(SubjectIdSchema),
  actors: Type.Array(ActorSchema, { minItems: 1, maxItems: MAX_ACTORS, description: 'The agents that may act for the issuer\'s subjects, each with the scopes it may use for them' })
}, { additionalProperties: false })
export type CreateSubjectTrustBody = Static<typeof CreateSubjectTrustBodySchema>

export const SubjectTrustListSchema = Type.Object({ items: Type.Array(SubjectTrustSchema) })
export type SubjectTrustList = Static<typeof SubjectTrustListSchema>

export const SubjectTrustParamsSchema = Type.Object({ id: UuidSchema })
