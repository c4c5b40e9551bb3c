import { Type } from 'typebox'

/** RFC 8414 / OIDC Discovery 1.0 metadata: only what this server actually serves. */
export const DiscoverySchema = Type.Object({
  issuer: Type.String(),
  token_endpoint: Type.String(),
  jwks_uri: Type.String(),
  revocation_endpoint: Type.Optional(Type.String()),
  revocation_endpoint_auth_methods_supported: Type.Optional(Type.Array(Type.String())),
  introspection_endpoint: Type.Optional(Type.String()),
  introspection_endpoint_auth_methods_supported: Type.Optional(Type.Array(Type.String())),
  grant_types_supported: Type.Array(Type.String()),
  token_endpoint_auth_methods_supported: Type.Array(Type.String()),
  scopes_supported: Type.Array(Type.String()),
  response_types_supported: Type.Array(Type.String()),
  subject_types_supported: Type.Array(Type.String()),
  id_token_signing_alg_values_supported: Type.Array(Type.String()),
  token_endpoint_auth_signing_alg_values_supported: Type.Optional(Type.Array(Type.String())),
  service_documentation: Type.Optional(Type.String())
}, { additionalProperties: true })

export const JwkSchema = Type.Object({
  kty: Type.Literal('RSA'),
  kid: Type.String(),
  use: Type.Literal('sig'),
  alg: Type.Literal('RS256'),
  n: Type.String(),
  e: Type.String()
})

export const JwksSchema = Type.Object({ keys: Type.Array(JwkSchema) })
