import { Type, type Static } from 'typebox'
import { TimestampSchema, UuidSchema } from './common.js'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

/** What a credential holds (sql/0009): only client secrets so far; a public key would be a new type. */
const CredentialTypeSchema = Type.Union([Type.Literal('client_secret')], { description: 'What the credential holds: client_secret (a secret AgentIdP generates)' })
export type CredentialType = Static<typeof CredentialTypeSchema>

/** A credential as listed: never its secret, never its hash. */
export const CredentialSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  type: CredentialTypeSchema,
  client_id: Type.String(),
  created_at: Timestamp,
  expires_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
  last_used_at: NullableTimestamp
}, { title: 'Credential' })
export type Credential = Static<typeof CredentialSchema>

/** The one response that carries a client secret. */
export const IssuedCredentialSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  type: CredentialTypeSchema,
  client_id: Type.String(),
  client_secret: Type.String({ description: 'Shown only in this response; AgentIdP keeps only its argon2id hash' }),
  created_at: Timestamp,
  expires_at: NullableTimestamp
}, { title: 'IssuedCredential' })
export type IssuedCredential = Static<typeof IssuedCredentialSchema>

export const CreateCredentialBodySchema = Type.Object({
  type: Type.Optional(CredentialTypeSchema),
  expires_at: Type.Optional(TimestampSchema('When the secret stops working; must be in the future. Absent: never expires'))
}, { additionalProperties: false })
export type CreateCredentialBody = Static<typeof CreateCredentialBodySchema>

export const CredentialListSchema = Type.Object({ items: Type.Array(CredentialSchema) })
export type CredentialList = Static<typeof CredentialListSchema>

export const CredentialParamsSchema = Type.Object({ id: UuidSchema, credential_id: UuidSchema })
export type CredentialParams = Static<typeof CredentialParamsSchema>
