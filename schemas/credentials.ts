import { Type, type Static } from 'typebox'
import { TimestampSchema, UuidSchema } from './common.js'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

/** What a credential holds (sql/0009, sql/0010): a secret AgentIdP generates, or a public key the client holds the private half of. */
const CredentialTypeSchema = Type.Union([Type.Literal('client_secret'), Type.Literal('private_key_jwt')], { description: 'What the credential holds: client_secret (a secret AgentIdP generates) or private_key_jwt (the public JWK of a key the client signs RFC 7523 assertions with)' })
export type CredentialType = Static<typeof CredentialTypeSchema>

/** A public JWK as stored and listed: only the members of a public key, never a private one. */
export const PublicJwkSchema = Type.Object({
  kty: Type.String(),
  crv: Type.Optional(Type.String()),
  x: Type.Optional(Type.String()),
  y: Type.Optional(Type.String()),
  n: Type.Optional(Type.String()),
  e: Type.Optional(Type.String()),
  kid: Type.Optional(Type.String()),
  alg: Type.Optional(Type.String())
}, { additionalProperties: false, description: 'The registered public key (RFC 7517)' })
export type PublicJwk = Static<typeof PublicJwkSchema>

/** What a private_key_jwt credential shows beside its id: the key and its RFC 7638 thumbprint. */
const KeyMaterial = {
  jwk: Type.Optional(PublicJwkSchema),
  jwk_thumbprint: Type.Optional(Type.String({ description: 'RFC 7638 SHA-256 thumbprint of jwk (base64url): a kid an assertion may name' }))
}

/** A credential as listed: never its secret, never its hash. */
export const CredentialSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  type: CredentialTypeSchema,
  client_id: Type.String(),
  created_at: Timestamp,
  expires_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
  last_used_at: NullableTimestamp,
  ...KeyMaterial
}, { title: 'Credential' })
export type Credential = Static<typeof CredentialSchema>

/** The one response that carries a client secret. */
export const IssuedCredentialSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  type: CredentialTypeSchema,
  client_id: Type.String(),
  client_secret: Type.Optional(Type.String({ description: 'client_secret only. Shown only in this response; AgentIdP keeps only its argon2id hash' })),
  created_at: Timestamp,
  expires_at: NullableTimestamp,
  ...KeyMaterial
}, { title: 'IssuedCredential' })
export type IssuedCredential = Static<typeof IssuedCredentialSchema>

export const CreateCredentialBodySchema = Type.Object({
  type: Type.Optional(CredentialTypeSchema),
  // Validated by the service (a private member is a 400 that says so, not a schema mismatch).
  jwk: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'private_key_jwt only: the public JWK (RSA of 2048 bits or more, EC P-256 or P-384, OKP Ed25519)' })),
  expires_at: Type.Optional(TimestampSchema('When the credential stops working; must be in the future. Absent: never expires'))
}, { additionalProperties: false })
export type CreateCredentialBody = Static<typeof CreateCredentialBodySchema>

export const CredentialListSchema = Type.Object({ items: Type.Array(CredentialSchema) })
export type CredentialList = Static<typeof CredentialListSchema>

export const CredentialParamsSchema = Type.Object({ id: UuidSchema, credential_id: UuidSchema })
export type CredentialParams = Static<typeof CredentialParamsSchema>
