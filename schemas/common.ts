import { Type, type Static, type TObjectOptions, type TSchema, type TString, type TStringOptions } from 'typebox'

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
  410: 'Gone for good',
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

/**
 * Text PostgreSQL stores as given: no NUL (text and jsonb refuse it) and no unpaired UTF-16 surrogate (it would be
 * stored as U+FFFD, silently). Ajv compiles patterns with the `u` flag, so a surrogate pair is one code point and passes.
 */
export const TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$'
export const UUID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
const TIMESTAMP_PATTERN = '^([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$'

/** What a request is told when a value breaks one of the shared patterns, rather than the pattern itself. */
export const PATTERN_MESSAGES: Record<string, string> = {
  [TEXT_PATTERN]: 'must not contain NUL (U+0000) or an unpaired surrogate',
  [UUID_PATTERN]: 'must be a UUID, lowercase and hyphenated',
  [TIMESTAMP_PATTERN]: 'must be an RFC 3339 date-time with an offset (Z or ±hh:mm), years 1000–9998, no leap second'
}

/** A string that reaches a text column (or jsonb) unchanged; every free-text request member uses it. */
export function TextSchema (options: TStringOptions = {}): TString {
  return Type.String({ ...options, pattern: TEXT_PATTERN })
}

/**
 * A UUID as this API writes it: lowercase and hyphenated. PostgreSQL also takes braces, uppercase, no hyphens, and
 * Ajv's `uuid` format a `urn:uuid:` prefix that PostgreSQL refuses; one spelling keeps ids comparable as text too.
 */
export const UuidSchema = Type.String({
  format: 'uuid',
  pattern: UUID_PATTERN,
  description: 'A UUID, lowercase and hyphenated'
})

/**
 * An RFC 3339 date-time that JavaScript and PostgreSQL both represent whatever its offset: years 1000 to 9998, no
 * leap second (neither can hold 23:59:60), `T` between date and time, an offset as Z or ±hh:mm.
 */
export const TimestampSchema = (description: string): TString => Type.String({
  format: 'date-time',
  pattern: TIMESTAMP_PATTERN,
  description: `${description} (RFC 3339 with offset, years 1000–9998)`
})

/** How many arrays and objects a JSON value stored in jsonb may nest, the outermost included. */
export const JSON_MAX_DEPTH = 8
const JSON_TYPES = ['string', 'number', 'boolean', 'null', 'array', 'object']
const storableJsonId = (depth: number): string => `StorableJson${depth}`
/** The innermost level: where a value nested too deep is refused. */
export const STORABLE_JSON_LEAF_ID = storableJsonId(0)

/**
 * StorableJson0 … StorableJson{JSON_MAX_DEPTH - 1}: any JSON value nested at most that many containers deep, whose
 * strings and member names at every depth are TEXT_PATTERN text, as jsonb stores them. One schema per depth rather
 * than one that refers to itself: a self-reference would let a deeply nested body exhaust the validator's stack.
 * Each lists every JSON type, so Ajv's type coercion never rewrites a value; each keyword checks only its type.
 */
export const STORABLE_JSON_SCHEMAS = Array.from({ length: JSON_MAX_DEPTH }, (_, depth) => depth === 0
  // The leaf too lists every type, and refuses every array and object by bounds none meets: a scalar-only `type`
  // lets Ajv's array coercion unwrap a one-element array ([""] one level too deep was accepted, and stored as null),
  // and `not: { type }` coerces the other way.
  ? { $id: STORABLE_JSON_LEAF_ID, type: JSON_TYPES, pattern: TEXT_PATTERN, minItems: 1, maxItems: 0, minProperties: 1, maxProperties: 0 }
  : {
      $id: storableJsonId(depth),
      type: JSON_TYPES,
      pattern: TEXT_PATTERN,
      propertyNames: { pattern: TEXT_PATTERN },
      items: { $ref: storableJsonId(depth - 1) },
      additionalProperties: { $ref: storableJsonId(depth - 1) }
    })

/** A JSON object for a jsonb column: its members any storable JSON, JSON_MAX_DEPTH containers deep in all. */
export function StorableJsonObjectSchema (options: TObjectOptions = {}) {
  return Type.Unsafe<Record<string, unknown>>({
    ...options,
    type: 'object',
    propertyNames: { pattern: TEXT_PATTERN },
    additionalProperties: { $ref: storableJsonId(JSON_MAX_DEPTH - 1) }
  })
}

/** The opaque next_cursor of a page (base64url), passed back unchanged. */
export const CursorSchema = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$', description: 'The next_cursor of the previous page, as given' })

/** Wraps a page of items in the envelope every list endpoint shares. */
export function PageSchema<T extends TSchema> (item: T) {
  return Type.Object({
    items: Type.Array(item),
    next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last page' })
  })
}
