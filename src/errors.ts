import type { FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { JSON_MAX_DEPTH, PATTERN_MESSAGES, STORABLE_JSON_LEAF_ID, type OAuthErrorBody, type Problem } from '../schemas/common.js'

/**
 * The problem types of the management API, by status: each `type` is a constant URN clients may match on, so it
 * never changes when a title is reworded. One entry per status this server answers with problem+json.
 */
export const PROBLEM_TYPES = {
  400: { type: 'urn:agentidp:problem:bad-request', title: 'Bad Request' },
  401: { type: 'urn:agentidp:problem:unauthorized', title: 'Unauthorized' },
  403: { type: 'urn:agentidp:problem:forbidden', title: 'Forbidden' },
  404: { type: 'urn:agentidp:problem:not-found', title: 'Not Found' },
  405: { type: 'urn:agentidp:problem:method-not-allowed', title: 'Method Not Allowed' },
  406: { type: 'urn:agentidp:problem:not-acceptable', title: 'Not Acceptable' },
  408: { type: 'urn:agentidp:problem:request-timeout', title: 'Request Timeout' },
  409: { type: 'urn:agentidp:problem:conflict', title: 'Conflict' },
  410: { type: 'urn:agentidp:problem:gone', title: 'Gone' },
  413: { type: 'urn:agentidp:problem:content-too-large', title: 'Content Too Large' },
  415: { type: 'urn:agentidp:problem:unsupported-media-type', title: 'Unsupported Media Type' },
  429: { type: 'urn:agentidp:problem:too-many-requests', title: 'Too Many Requests' },
  500: { type: 'urn:agentidp:problem:internal-server-error', title: 'Internal Server Error' },
  503: { type: 'urn:agentidp:problem:service-unavailable', title: 'Service Unavailable' }
} as const

export type ProblemStatus = keyof typeof PROBLEM_TYPES

/**
 * A management API error, answered as RFC 9457 problem+json. Its `type` and `title` come from PROBLEM_TYPES by
 * status; `detail` says what went wrong with this request.
 */
export class ProblemError extends Error {
  readonly type: string
  readonly title: string

  constructor (
    readonly status: ProblemStatus,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
    readonly errors?: Problem['errors'],
    /** Extension member of a 403: the scopes the caller would need and does not hold. */
    readonly missingScopes?: string[]
  ) {
    super(detail)
    this.name = 'ProblemError'
    this.type = PROBLEM_TYPES[status].type
    this.title = PROBLEM_TYPES[status].title
  }

  toProblem (instance: string): Problem {
    return { type: this.type, title: this.title, status: this.status, detail: this.detail, instance, errors: this.errors, missing_scopes: this.missingScopes }
  }
}

export const badRequest = (detail: string, errors?: Problem['errors']): ProblemError => new ProblemError(400, detail, {}, errors)
/** A 400 about one member of the body: `{member}: {message}`, located at body/{member}. */
export const badMember = (member: string, message: string): ProblemError => badRequest(`${member}: ${message}`, [{ location: `body/${member}`, message }])
/** 403: authenticated, but the caller's authority does not reach; names the scopes it lacks when there are some. */
export const forbidden = (detail: string, missingScopes?: string[]): ProblemError => new ProblemError(403, detail, {}, undefined, missingScopes)
export const notFound = (detail: string): ProblemError => new ProblemError(404, detail)
export const conflict = (detail: string): ProblemError => new ProblemError(409, detail)
/** 410: the resource existed and never will again (a decommissioned agent's DID document). */
export const gone = (detail: string): ProblemError => new ProblemError(410, detail)
export const serviceUnavailable = (detail: string): ProblemError => new ProblemError(503, detail, { 'retry-after': '5' })

/**
 * An RFC 6749 §5.2 error of an OAuth endpoint. One subclass per error code this server answers (as
 * node-oidc-provider does); the description is always safe to show the client.
 */
export abstract class OAuthError extends Error {
  constructor (
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(description)
    this.name = 'OAuthError'
  }

  toBody (): OAuthErrorBody {
    return { error: this.error, error_description: this.description }
  }
}

/** RFC 6749 §5.2 invalid_request; 413 when the body was too large, 400 otherwise. */
export class InvalidRequest extends OAuthError {
  constructor (description: string, status: 400 | 413 = 400) { super(status, 'invalid_request', description) }
}
/** RFC 6749 §5.2: 401 with a WWW-Authenticate naming the scheme the client used (Basic by default). */
export class InvalidClient extends OAuthError {
  constructor (description = 'client authentication failed', scheme: 'Basic' | 'Bearer' = 'Basic') {
    super(401, 'invalid_client', description, { 'www-authenticate': `${scheme} realm="agentidp", error="invalid_client"` })
  }
}
/** RFC 6749 §5.2 invalid_grant: the grant (an RFC 7523 assertion) is invalid, expired, replayed or matches no trust. */
export class InvalidGrant extends OAuthError {
  constructor (description: string) { super(400, 'invalid_grant', description) }
}
export class UnsupportedGrantType extends OAuthError {
  constructor (description: string) { super(400, 'unsupported_grant_type', description) }
}
export class InvalidScope extends OAuthError {
  constructor (description: string) { super(400, 'invalid_scope', description) }
}
/** RFC 8707 §2: a resource the client may not name, or one that is not an absolute URI without a fragment. */
export class InvalidTarget extends OAuthError {
  constructor (description: string) { super(400, 'invalid_target', description) }
}
/**
 * RFC 8628 §3.5's slow_down, answered by the token endpoint when a client is rate limited (429). With
 * `retryAfterSeconds` it sets Retry-After; without, the rate limiter has set it on the reply already.
 */
export class SlowDown extends OAuthError {
  constructor (description: string, retryAfterSeconds?: number) {
    super(429, 'slow_down', description, retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) })
  }
}
/** RFC 9449 §5: a DPoP proof that is missing where one is required, malformed, or fails one of its checks (§4.3). */
export class InvalidDpopProof extends OAuthError {
  constructor (description: string) { super(400, 'invalid_dpop_proof', description) }
}
/** RFC 9449 §8: the proof must carry a nonce of this server's; DPoP-Nonce gives the one to use. */
export class UseDpopNonce extends OAuthError {
  constructor (description: string, nonce: string) { super(400, 'use_dpop_nonce', description, { 'dpop-nonce': nonce }) }
}
export class TemporarilyUnavailable extends OAuthError {
  constructor (description = 'the service is temporarily unavailable, retry shortly', retryAfterSeconds = 5) {
    super(503, 'temporarily_unavailable', description, { 'retry-after': String(retryAfterSeconds) })
  }
}
export class ServerError extends OAuthError {
  constructor () { super(500, 'server_error', 'the server encountered an unexpected condition') }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route is an OAuth endpoint: its errors are RFC 6749 JSON, not problem+json. */
    oauth?: boolean
  }
}

// The keywords by which STORABLE_JSON_LEAF_ID refuses an array or object nested too deep.
const CONTAINER_BOUNDS = new Set(['minItems', 'maxItems', 'minProperties', 'maxProperties'])

/**
 * Ajv's message for one failed keyword, except for the shared schemas, whose messages would quote their internals.
 * Its additionalProperties message names no property ("must NOT have additional properties"): the one refused is in
 * params, and a caller needs it to find the typo.
 */
function validationMessage (item: FastifySchemaValidationError): string {
  const patternMessage = item.keyword === 'pattern' ? PATTERN_MESSAGES[item.params.pattern as string] : undefined
  if (patternMessage !== undefined) return `${'propertyName' in item ? 'a member name ' : ''}${patternMessage}`
  if (CONTAINER_BOUNDS.has(item.keyword) && item.schemaPath.startsWith(`${STORABLE_JSON_LEAF_ID}/`)) return `nests more than ${JSON_MAX_DEPTH} arrays and objects deep`
  const property = item.keyword === 'additionalProperties' ? item.params?.additionalProperty : undefined
  if (typeof property === 'string') return `must NOT have additional property '${property}'`
  return item.message ?? 'is invalid'
}

/** Maps Fastify's own client errors (parsing, validation, size) to a status and a safe message. */
function clientErrorOf (error: FastifyError): { status: number, message: string, errors?: Problem['errors'] } | undefined {
  if (error.validation !== undefined) {
    const context = error.validationContext ?? 'body'
    // A propertyNames failure follows the failure that caused it, which says more.
    const items = error.validation.length > 1 ? error.validation.filter((item) => item.keyword !== 'propertyNames') : error.validation
    const errors = items.map((item) => ({
      location: `${context}${item.instancePath === '' ? '' : item.instancePath}`,
      message: validationMessage(item)
    }))
    return { status: 400, message: errors.map(({ location, message }) => `${location} ${message}`).join(', '), errors }
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return { status: 415, message: 'unsupported content type' }
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return { status: 413, message: 'request body is too large' }
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH': return { status: 400, message: 'content-length does not match the body' }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return { status: 400, message: 'body is empty but content-type says JSON' }
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return { status: 400, message: 'body is not valid JSON' }
    case 'FST_ERR_BAD_URL': return { status: 400, message: 'the URL is not validly percent-encoded' }
  }
  if (error instanceof SyntaxError) return { status: 400, message: 'body is not valid JSON' }
  if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
    return { status: error.statusCode, message: error.statusCode === 429 ? 'too many requests' : error.message }
  }
  return undefined
}

function sendProblem (reply: FastifyReply, request: FastifyRequest, problem: ProblemError): FastifyReply {
  return reply.code(problem.status).headers(problem.headers).type('application/problem+json').send(problem.toProblem(request.url.split('?')[0] as string))
}

function sendOAuthError (reply: FastifyReply, error: OAuthError): FastifyReply {
  return reply.code(error.status).headers(error.headers).type('application/json').send(error.toBody())
}

/** True when an error means PostgreSQL could not be reached, rather than a bug. */
export function isDatabaseUnavailable (error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'CONNECT_TIMEOUT' ||
    code === 'CONNECTION_CLOSED' || code === 'CONNECTION_ENDED' || code === 'CONNECTION_DESTROYED' || code === 'EPIPE' ||
    code === '57P01' || code === '57P03' || code === '53300'
}

/**
 * The one error handler. OAuth routes answer RFC 6749 JSON, everything else RFC 9457 problem+json; client errors
 * keep their 4xx; a backing service that is down is a 503; anything else is logged and answered as a bare 500.
 */
export function handleError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const oauthRoute = request.routeOptions.config?.oauth === true
  if (error instanceof OAuthError) return sendOAuthError(reply, error)
  if (error instanceof ProblemError) return sendProblem(reply, request, error)

  const client = clientErrorOf(error)
  if (client !== undefined) {
    const headers = (error as { headers?: Record<string, string> }).headers
    if (client.status === 429 && headers !== undefined) reply.headers(headers)
    if (oauthRoute) {
      if (client.status === 429) return sendOAuthError(reply, new SlowDown(client.message))
      return sendOAuthError(reply, new InvalidRequest(client.message, client.status === 413 ? 413 : 400))
    }
    const status = Object.hasOwn(PROBLEM_TYPES, client.status) ? client.status as ProblemStatus : 400
    return sendProblem(reply, request, new ProblemError(status, client.message, {}, client.errors))
  }

  if (isDatabaseUnavailable(error)) {
    request.log.warn({ err: { code: (error as { code?: string }).code, message: error.message } }, 'database unavailable')
    return oauthRoute ? sendOAuthError(reply, new TemporarilyUnavailable()) : sendProblem(reply, request, serviceUnavailable('the database is unavailable, retry shortly'))
  }

  request.log.error({ err: error }, 'unhandled error')
  return oauthRoute
    ? sendOAuthError(reply, new ServerError())
    : sendProblem(reply, request, new ProblemError(500, 'the server encountered an unexpected condition'))
}

/** Unknown routes: a 404 in the management API's problem+json. */
export function handleNotFound (request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendProblem(reply, request, notFound(`no route ${request.method} ${request.url.split('?')[0]}`))
}
