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
  dpop_signing_alg_values_supported: Type.Optional(Type.Array(Type.String())),
  service_documentation: Type.Optional(Type.String())
}, { additionalProperties: true })

const JwkCommon = {
  kid: Type.String({ description: 'RFC 7638 thumbprint of the key' }),
  use: Type.Literal('sig')
}

/** A public signing key as the JWKS publishes it: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA), never a private member. */
export const JwkSchema = Type.Union([
  Type.Object({ kty: Type.Literal('RSA'), ...JwkCommon, alg: Type.Literal('RS256'), n: Type.String(), e: Type.String() }),
  Type.Object({ kty: Type.Literal('EC'), ...JwkCommon, alg: Type.Literal('ES256'), crv: Type.Literal('P-256'), x: Type.String(), y: Type.String() }),
  Type.Object({ kty: Type.Literal('OKP'), ...JwkCommon, alg: Type.Literal('EdDSA'), crv: Type.Literal('Ed25519'), x: Type.String() })
])

export const JwksSchema = Type.Object({ keys: Type.Array(JwkSchema) })

/** A verification method of a DID document (W3C DID 1.0 §5.2), a JsonWebKey2020 holding a public JWK. */
const VerificationMethodSchema = Type.Object({
  id: Type.String({ description: 'The DID with the key\'s fragment: #{kid} for the issuer\'s keys, #{RFC 7638 thumbprint} for an agent\'s' }),
  type: Type.Literal('JsonWebKey2020'),
  controller: Type.String(),
  publicKeyJwk: Type.Object({
    kty: Type.String(),
    crv: Type.Optional(Type.String()),
    x: Type.Optional(Type.String()),
    y: Type.Optional(Type.String()),
    n: Type.Optional(Type.String()),
    e: Type.Optional(Type.String()),
    kid: Type.Optional(Type.String()),
    alg: Type.Optional(Type.String()),
    use: Type.Optional(Type.String())
  }, { additionalProperties: false })
})

/** A did:web DID document (W3C DID 1.0), served as application/did+json with its JSON-LD @context. */
export const DidDocumentSchema = Type.Object({
  '@context': Type.Array(Type.String()),
  id: Type.String(),
  controller: Type.Optional(Type.String({ description: 'An agent\'s: the issuer\'s DID' })),
  verificationMethod: Type.Array(VerificationMethodSchema),
  authentication: Type.Array(Type.String()),
  assertionMethod: Type.Array(Type.String())
}, { title: 'DID document' })
