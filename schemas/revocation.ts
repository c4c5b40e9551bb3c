import { Type, type Static } from 'typebox'

const Parameter = (description: string) => Type.String({ maxLength: 16_384, description })

/** RFC 7009 §2.1 / RFC 7662 §2.1 request: the token, a hint, and client_secret_post credentials if used. */
export const TokenParameterBodySchema = Type.Object({
  token: Parameter('The access token'),
  token_type_hint: Type.Optional(Parameter('access_token (refresh tokens are not issued; any hint is accepted and ignored)')),
  client_id: Type.Optional(Parameter('client_secret_post, or optionally private_key_jwt')),
  client_secret: Type.Optional(Parameter('client_secret_post only')),
  client_assertion_type: Type.Optional(Parameter('private_key_jwt only: urn:ietf:params:oauth:client-assertion-type:jwt-bearer')),
  client_assertion: Type.Optional(Parameter('private_key_jwt only: a JWT signed with a registered key (RFC 7523 §2.2)'))
}, { additionalProperties: Type.Unknown() })
export type TokenParameterBody = Static<typeof TokenParameterBodySchema>

/** RFC 7662 §2.2: inactive tokens say only that; active ones carry their claims. */
export const IntrospectionSchema = Type.Object({
  active: Type.Boolean(),
  scope: Type.Optional(Type.String()),
  client_id: Type.Optional(Type.String()),
  sub: Type.Optional(Type.String()),
  aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  iss: Type.Optional(Type.String()),
  exp: Type.Optional(Type.Integer()),
  iat: Type.Optional(Type.Integer()),
  jti: Type.Optional(Type.String()),
  token_type: Type.Optional(Type.Union([Type.Literal('Bearer'), Type.Literal('DPoP')], { description: 'DPoP for a token bound to a key (RFC 9449 §6.2)' })),
  cnf: Type.Optional(Type.Object({ jkt: Type.String({ description: 'RFC 7638 thumbprint of the key the token is bound to' }) }, { description: 'RFC 9449 §6.2: present when the token is DPoP-bound' })),
  act: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'RFC 8693 §4.1: for a token issued by token exchange to an agent acting for sub, that agent ({sub, iss, sub_profile: ai_agent}), with the earlier actors nested in act, newest first' }))
})
export type Introspection = Static<typeof IntrospectionSchema>
