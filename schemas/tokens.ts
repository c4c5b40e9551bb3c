import { Type, type Static } from 'typebox'
import { AGENT_MAX_RESOURCES } from './agents.js'

/**
 * A form parameter. `examples` is what the docs page prefills: the one value a field takes, or nothing for an
 * optional one (Swagger UI would otherwise fill in "string" and send it; an empty field is left out).
 */
const Parameter = (description: string, example = '') => Type.String({ maxLength: 4096, description, examples: [example] })

/**
 * POST /oauth2/token, form-encoded. Every parameter appears at most once (RFC 6749 §3.2), except `resource`
 * (RFC 8707 allows several). Unknown parameters are ignored, as RFC 6749 §3.2 requires.
 */
export const TokenRequestBodySchema = Type.Object({
  grant_type: Parameter('client_credentials, urn:ietf:params:oauth:grant-type:jwt-bearer, or urn:ietf:params:oauth:grant-type:token-exchange', 'client_credentials'),
  scope: Type.Optional(Parameter('Space-separated scopes; absent: every scope the agent may hold')),
  // As many as an agent may hold; each must be one of them or the default audience (else invalid_target).
  resource: Type.Optional(Type.Union([Parameter('RFC 8707 resource indicator: becomes aud; TOKEN_AUDIENCE or one of the agent\'s resources'), Type.Array(Type.String({ maxLength: 2048 }), { maxItems: AGENT_MAX_RESOURCES })])),
  client_id: Type.Optional(Parameter('client_secret_post, or optionally private_key_jwt')),
  client_secret: Type.Optional(Parameter('client_secret_post only')),
  client_assertion_type: Type.Optional(Parameter('private_key_jwt only: urn:ietf:params:oauth:client-assertion-type:jwt-bearer')),
  client_assertion: Type.Optional(Parameter('private_key_jwt only: a JWT signed with a registered key (RFC 7523 §2.2)')),
  assertion: Type.Optional(Parameter('jwt-bearer only: the external JWT a federated credential trusts (RFC 7523 §2.1)')),
  subject_token: Type.Optional(Parameter('token-exchange only (RFC 8693): the token of the party acted for: an access token of this issuer, or a person\'s token a subject trust accepts')),
  subject_token_type: Type.Optional(Parameter('token-exchange only: urn:ietf:params:oauth:token-type:access_token; for a person\'s token urn:ietf:params:oauth:token-type:id_token, …:jwt or …:id-jag')),
  actor_token: Type.Optional(Parameter('token-exchange only, optional: an access token of the caller itself')),
  actor_token_type: Type.Optional(Parameter('token-exchange only, with actor_token: urn:ietf:params:oauth:token-type:access_token')),
  requested_token_type: Type.Optional(Parameter('token-exchange only: urn:ietf:params:oauth:token-type:access_token (default), or urn:ietf:params:oauth:token-type:jwt for a workload JWT with audience')),
  audience: Type.Optional(Type.Union([Parameter('token-exchange only: a logical audience name; becomes aud'), Type.Array(Type.String({ maxLength: 2048 }), { maxItems: AGENT_MAX_RESOURCES })]))
}, { additionalProperties: Type.Unknown() })
export type TokenRequestBody = Static<typeof TokenRequestBodySchema>

export const TokenResponseSchema = Type.Object({
  access_token: Type.String({ description: 'RFC 9068 JWT (typ at+jwt), signed with the current key\'s algorithm: RS256, ES256 or EdDSA' }),
  token_type: Type.Union([Type.Literal('Bearer'), Type.Literal('DPoP'), Type.Literal('N_A')], { description: 'DPoP when the request carried a DPoP proof: the token is bound to its key (cnf.jkt) and must be sent as Authorization: DPoP with a proof (RFC 9449). N_A for a token exchange\'s workload JWT, which is no access token (RFC 8693 §2.2.1)' }),
  expires_in: Type.Integer(),
  scope: Type.Optional(Type.String({ description: 'Always present for an access token; absent for a workload JWT' })),
  issued_token_type: Type.Optional(Type.String({ description: 'token-exchange only (RFC 8693 §2.2.1): urn:ietf:params:oauth:token-type:access_token or urn:ietf:params:oauth:token-type:jwt' }))
})
