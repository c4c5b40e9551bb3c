import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyContextConfig, FastifyRequest } from 'fastify'
import { InvalidRequest, UnsupportedGrantType } from '../../src/errors.js'
import { newId } from '../../src/ids.js'
import { oauthErrorResponses } from '../../schemas/common.js'
import { TokenRequestBodySchema, TokenResponseSchema } from '../../schemas/tokens.js'
import type { AuthenticatedClient } from '../clients/authentication.js'
import { clientCredentials, type Grant } from './grants/client-credentials.js'

/** Grants by the grant_type on the wire: adding one (token exchange, jwt-bearer) is adding a file and a line. */
export const GRANTS: Record<string, Grant> = {
  client_credentials: clientCredentials
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The client authenticated for this OAuth request. */
    client?: AuthenticatedClient
  }
}

/** RFC 6749 §3.2: the token endpoint takes application/x-www-form-urlencoded only. */
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

/** POST /oauth2/token (RFC 6749 §3.2, §4.4; RFC 9068 access tokens). */
const tokens: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(formbody, { bodyLimit: 16 * 1024 })
  const { config } = app
  const perClient = config.rateLimit.tokenPerMinute

  app.post('/oauth2/token', {
    schema: {
      tags: ['oauth2'],
      summary: 'Token endpoint: client_credentials',
      description: 'Authenticate with client_secret_basic (form-urlencoded id and secret, RFC 6749 §2.3.1) or client_secret_post, exactly one. Returns an RFC 9068 JWT access token. Errors are RFC 6749 §5.2 JSON.',
      consumes: ['application/x-www-form-urlencoded'],
      security: [{ clientSecretBasic: [] }, {}],
      body: TokenRequestBodySchema,
      response: { 200: TokenResponseSchema, ...oauthErrorResponses(400, 401, 429, 503) }
    },
    bodyLimit: 16 * 1024,
    config: {
      oauth: true,
      ...(perClient === 0 ? {} : { rateLimit: { max: perClient, timeWindow: 60_000, hook: 'preHandler', keyGenerator: (request: FastifyRequest) => request.client?.clientId ?? request.ip } })
    } as FastifyContextConfig,
    preValidation: requireFormBody,
    // Authentication runs before the per-client rate limit (a preHandler added after this one), so only a
    // client that proved who it is spends its own quota; failures have their own limiter, keyed by address.
    preHandler: async (request) => {
      const grantType = (request.body as { grant_type: string }).grant_type
      if (!Object.hasOwn(GRANTS, grantType)) throw new UnsupportedGrantType(`grant_type ${grantType.slice(0, 100)} is not supported; use client_credentials`)
      // The issue time is taken before the client's standing is read: see authenticateClient.
      request.jti = newId()
      request.client = await app.authenticateClient(request, 'token')
    }
  }, async (request, reply) => {
    const grant = GRANTS[request.body.grant_type] as Grant
    const response = await grant.handle({ app, request, body: request.body, client: request.client as AuthenticatedClient, jti: request.jti as string })
    return reply.send(response)
  })
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The jti of the token this request will issue, made when the request was authenticated. */
    jti?: string
  }
}

export default tokens

export { default as bearerAuthentication } from './bearer.js'
export { default as issuerContext, type IssuerContext } from './issuer-context.js'
