import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, preHandlerAsyncHookHandler } from 'fastify'
import type { Static, TSchema } from 'typebox'
import { InvalidRequest } from '../../src/errors.js'
import { organizationSegment } from '../../src/store.js'
import { presentsClientCredentials, type AuthenticatedClient } from '../clients/public.js'
import { rateLimitStep } from '../infra/rate-limit.js'

/** A client-authenticated OAuth endpoint: POST, form-encoded, answered with RFC 6749 §5.2 errors. */
export interface OAuthRoute<B extends TSchema, A> {
  url: `/oauth2/${string}`
  /** The endpoint as client authentication names it in audit events and metrics. */
  endpoint: string
  schema: FastifySchema & { body: B }
  bodyLimit: number
  /** Requests a minute per authenticated client; 0 or absent: no such limit. */
  perClientRateLimit?: number
  /**
   * Whether this request must authenticate its client (the default) or may (RFC 7523 §3.1: the jwt-bearer grant
   * authenticates by its assertion). When optional, a request that presents client credentials is still
   * authenticated, and one that presents none reaches the handler with `request.client` null.
   */
  clientAuthentication?: (request: FastifyRequest<{ Body: Static<B> }>) => 'required' | 'optional'
  /** The endpoint's own steps before client authentication, after the body is validated. */
  beforeAuthentication?: Array<(request: FastifyRequest<{ Body: Static<B> }>) => Promise<void>>
  /**
   * Work that does not depend on who the client is, run at once with its authentication (their Redis reads
   * share one round trip); what it resolves to is the handler's fourth argument. It must not reject for a reason
   * the handler should answer: it runs whether or not the client authenticates.
   */
  alongsideAuthentication?: (request: FastifyRequest<{ Body: Static<B> }>) => Promise<A>
  handler: (request: FastifyRequest<{ Body: Static<B> }>, reply: FastifyReply, client: AuthenticatedClient, alongside: A) => Promise<unknown>
}

/** RFC 6749 §3.2: the OAuth endpoints take application/x-www-form-urlencoded only. */
export async function requireFormBody (request: FastifyRequest): Promise<void> {
  if (!(request.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new InvalidRequest('the request body must be application/x-www-form-urlencoded')
  }
  dropEmptyParameters(request.body)
}

/**
 * RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted from the request." Runs
 * before validation, so `scope=` asks for what no scope parameter asks for, and an empty `client_secret=` beside
 * Basic credentials is no second authentication method.
 */
function dropEmptyParameters (body: unknown): void {
  if (body === null || typeof body !== 'object') return
  const form = body as Record<string, unknown>
  for (const [name, value] of Object.entries(form)) {
    if (value === '') {
      delete form[name]
    } else if (Array.isArray(value)) {
      const given = value.filter((item) => item !== '')
      if (given.length === 0) delete form[name]
      else form[name] = given.length === 1 ? given[0] : given
    }
  }
}

/**
 * Registers an OAuth endpoint with its steps in one visible order: form body (empty parameters dropped), schema
 * validation, the endpoint's own steps, client authentication (with its failure limiter, keyed by address), then
 * the per-client rate limit, so only a client that proved who it is spends its own quota (a request whose grant needs
 * no client authentication and presents none spends its address's). Cache-Control: no-store
 * is set on every /oauth2/ answer, errors included, by the app's onSend hook (src/app.ts); the url type holds
 * every OAuth route under that prefix. The form body parser is the caller's (@fastify/formbody, with its limit).
 */
export function oauthRoute<B extends TSchema, A = undefined> (app: FastifyInstance, route: OAuthRoute<B, A>): void {
  type Request = FastifyRequest<{ Body: Static<B> }>
  const alongside = new WeakMap<FastifyRequest, A>()

  async function authenticateClient (request: Request): Promise<void> {
    if (route.clientAuthentication?.(request) === 'optional' && !presentsClientCredentials(request)) return
    if (route.alongsideAuthentication === undefined) {
      request.client = await app.authenticateClient(request, route.endpoint)
      return
    }
    const [client, result] = await Promise.all([app.authenticateClient(request, route.endpoint), route.alongsideAuthentication(request)])
    request.client = client
    alongside.set(request, result)
  }

  const perClient = route.perClientRateLimit ?? 0
  const steps = [
    ...(route.beforeAuthentication ?? []),
    authenticateClient,
    // A request that authenticated no client (optional authentication) spends its address's quota instead.
    ...(perClient === 0 ? [] : [rateLimitStep(app, route.url, perClient, (request) => request.client === null ? `address ${request.ip}` : `${organizationSegment(request.issuerContext.orgId)}${request.client.clientId}`)])
  ] as preHandlerAsyncHookHandler[]

  app.post<{ Body: Static<B> }>(route.url, {
    schema: route.schema,
    bodyLimit: route.bodyLimit,
    config: { oauth: true } as FastifyContextConfig,
    preValidation: requireFormBody,
    preHandler: steps
  }, async (request, reply) => await route.handler(request, reply, request.client as AuthenticatedClient, alongside.get(request) as A))
}
