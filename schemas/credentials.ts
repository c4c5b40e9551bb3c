import { Type, type Static } from 'typebox'
import { StorableJsonObjectSchema, TextSchema, TimestampSchema, UuidSchema } from './common.js'

const Timestamp = Type.String({ format: 'date-time' })
const NullableTimestamp = Type.Union([Timestamp, Type.Null()])

/**
 * What a credential holds (sql/0009, sql/0010, sql/0014): a secret AgentIdP generates, a public key the client holds
 * the private half of, or a federation trust (tokens of an external issuer stand for the agent).
 */
const CredentialTypeSchema = Type.Union([Type.Literal('client_secret'), Type.Literal('private_key_jwt'), Type.Literal('federated')], { description: 'What the credential holds: client_secret (a secret AgentIdP generates), private_key_jwt (the public JWK of a key the client signs RFC 7523 assertions with) or federated (tokens of an external issuer, presented with the jwt-bearer grant, stand for the agent)' })
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

/** A JWK Set (RFC 7517 §5) of public keys, as a federated credential holds it. */
export const PublicJwkSetSchema = Type.Object({ keys: Type.Array(PublicJwkSchema) }, { additionalProperties: false })
export type PublicJwkSet = Static<typeof PublicJwkSetSchema>

/** A claim value a federated credential requires: a JSON value; an object matches member by member. */
const ClaimValueSchema = Type.Unknown({ description: 'A JSON value the token\'s claim must equal; an object matches member by member (the token may carry more members)' })

/** What a federated credential shows beside its id: its trust rule. */
const FederationRule = {
  issuer: Type.Optional(Type.String({ description: 'federated only: the external issuer (iss), matched exactly' })),
  subject: Type.Optional(Type.String({ description: 'federated only: the subject (sub), matched exactly: no prefix, no wildcard' })),
  audience: Type.Optional(Type.String({ description: 'federated only: what the external token must carry in aud (default: this issuer)' })),
  claims: Type.Optional(Type.Record(Type.String(), ClaimValueSchema, { description: 'federated only: further claims that must match exactly' })),
  jwks_uri: Type.Optional(Type.String({ description: 'federated only: where the issuer\'s keys are fetched (default: its OIDC discovery)' })),
  jwks: Type.Optional(PublicJwkSetSchema)
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
  ...KeyMaterial,
  ...FederationRule
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
  ...KeyMaterial,
  ...FederationRule
}, { title: 'IssuedCredential' })
export type IssuedCredential = Static<typeof IssuedCredentialSchema>

export const CreateCredentialBodySchema = Type.Object({
  type: Type.Optional(CredentialTypeSchema),
  // Validated by the service (a private member is a 400 that says so, not a schema mismatch).
  jwk: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'private_key_jwt only: the public JWK (RSA of 2048 bits or more, EC P-256 or P-384, OKP Ed25519)' })),
  expires_at: Type.Optional(TimestampSchema('When the credential stops working; must be in the future, and within CREDENTIAL_MAX_AGE_DAYS when set. Absent: never expires, or with CREDENTIAL_MAX_AGE_DAYS set, that many days from now')),
  // federated only; validated by the service, which names the member at fault.
  issuer: Type.Optional(TextSchema({ minLength: 1, maxLength: 1024, description: 'federated only: the external issuer, exactly as its tokens carry it in iss' })),
  subject: Type.Optional(TextSchema({ minLength: 1, maxLength: 1024, description: 'federated only: the exact sub of its tokens (system:serviceaccount:ns:name, repo:org/repo:ref:refs/heads/main, spiffe://…)' })),
  audience: Type.Optional(TextSchema({ minLength: 1, maxLength: 1024, description: 'federated only: the aud its tokens must carry; default: this issuer' })),
  claims: Type.Optional(StorableJsonObjectSchema({ description: 'federated only: further claims that must match exactly (at most 16), e.g. {"repository_id": "123"}' })),
  jwks_uri: Type.Optional(TextSchema({ minLength: 1, maxLength: 2048, description: 'federated only: the issuer\'s JWK Set URL; default: the jwks_uri of its OIDC discovery' })),
  jwks: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'federated only: the issuer\'s public keys as a JWK Set (a SPIFFE trust bundle); then nothing is fetched' }))
}, { additionalProperties: false })
export type CreateCredentialBody = Static<typeof CreateCredentialBodySchema>

export const CredentialListSchema = Type.Object({ items: Type.Array(CredentialSchema) })
export type CredentialList = Static<typeof CredentialListSchema>

export const CredentialParamsSchema = Type.Object({ id: UuidSchema, credential_id: UuidSchema })
export type CredentialParams = Static<typeof CredentialParamsSchema>
