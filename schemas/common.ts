import { Type, type Static, type TSchema } from 'typebox'

/** RFC 9457 problem details: every management API error body. */
export const ProblemSchema = Type.Object({
  type: Type.String({ description: 'A URI reference that identifies the problem type' }),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.Optional(Type.String()),
  instance: Type.Optional(Type.String()),
  errors: Type.Optional(Type.Array(Type.Object({
    location: Type.String({ description: 'Where the bad value is, as a JSON pointer into body, querystring, params or headers' }),
    message: Type.String()
  }), { description: 'Each validation failure, when the request did not match its schema' })),
  missing_scopes: Type.Optional(Type.Array(Type.String(), { description: 'On a 403: the scopes the caller would need and does not hold' }))
}, { $id: 'Problem', title: 'Problem (RFC 9457)' })
export type Problem = Static<typeof ProblemSchema>

/** RFC 6749 §5.2 error body: every OAuth endpoint error. */
export const OAuthErrorSchema = Type.Object({
  error: Type.String(),
  error_description: Type.Optional(Type.String())
}, { $id: 'OAuthError', title: 'OAuth 2.0 error (RFC 6749 §5.2)' })
export type OAuthErrorBody = Static<typeof OAuthErrorSchema>

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Bad request: the request did not match the schema',
  401: 'Unauthenticated',
  403: 'Authenticated, but not allowed',
  404: 'Not found',
  409: 'Conflict with the current state',
  413: 'Request body too large',
  415: 'Unsupported content type',
  429: 'Too many requests',
  503: 'A backing service is unavailable'
}

/** Response schemas for management API errors, keyed by status, served as application/problem+json. */
export function problemResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map((status) => [status, {
    description: ERROR_DESCRIPTIONS[status] ?? 'Error',
    content: { 'application/problem+json': { schema: Type.Ref('Problem') } }
  }]))
}

/** Response schemas for OAuth endpoint errors, keyed by status, as RFC 6749 §5.2 JSON. */
export function oauthErrorResponses (...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map((status) => [status, {
    description: ERROR_DESCRIPTIONS[status] ?? 'Error',
    content: { 'application/json': { schema: Type.Ref('OAuthError') } }
  }]))
}

/** A UUID path or body value. */
export const UuidSchema = Type.String({ format: 'uuid' })

/** Wraps a page of items in the envelope every list endpoint shares. */
export function PageSchema<T extends TSchema> (item: T) {
  return Type.Object({
    items: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page' })
  })
}
