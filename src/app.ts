import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import cors from '@fastify/cors'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import auditEvents, { auditRetention, auditTrail } from '../plugins/audit/index.js'
import clients, { clientAuthentication, clientFederation, credentialExpiryScan } from '../plugins/clients/index.js'
import docs from '../plugins/docs/index.js'
import configPlugin from '../plugins/infra/config.js'
import keys from '../plugins/infra/keys.js'
import metrics from '../plugins/infra/metrics.js'
import postgres from '../plugins/infra/postgres.js'
import rateLimit from '../plugins/infra/rate-limit.js'
import redis from '../plugins/infra/redis.js'
import reports from '../plugins/reports/index.js'
import oidc from '../plugins/oidc/index.js'
import organizations, { organizationIssuers, rewriteOrganizationUrl } from '../plugins/organizations/index.js'
import operations from '../plugins/operations/index.js'
import revocation, { revocationState } from '../plugins/revocation/index.js'
import tokens, { bearerAuthentication, dpopProofs, issuerContext } from '../plugins/tokens/index.js'
import webhooks, { webhookDelivery } from '../plugins/webhooks/index.js'
import type { Config } from './config.js'
import { handleError, handleNotFound } from './errors.js'
import { loggerOptions } from './logger.js'

export type App = FastifyInstance

// A caller's request id is kept when it is short and plain; anything else is replaced, never echoed into logs.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Whether a request carries a body (RFC 9112 §6.3): a Content-Length above zero, or a Transfer-Encoding. */
function hasBody (headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0')
}

// Responses of the management API and the OAuth endpoints carry credentials, tokens or the state behind them:
// no cache may keep one (RFC 6749 §5.1, RFC 9111 §5.2.2.5), errors included.
const UNCACHEABLE = /^\/(?:api|oauth2)\//
// HSTS for a year, for the issuer's host only: the issuer may be a path on a domain whose other hosts are not ours.
const HSTS = 'max-age=31536000'

/**
 * Sets the headers every response carries: nosniff, HSTS behind an https issuer, no-store on credentials. ISSUER's
 * scheme is the deployment's, shared by every issuer it serves; framework errors come before any issuer context.
 */
function setSecurityHeaders (config: Config, request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-content-type-options', 'nosniff')
  if (config.issuer.startsWith('https:')) reply.header('strict-transport-security', HSTS)
  if (UNCACHEABLE.test(request.url)) reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
}

/**
 * TRUST_PROXY as a hop count: the nearest `hops` addresses (the socket's peer first) are proxies, as proxy-addr
 * reads a number. Fastify 5 takes a bare number to mean "trust none" (a count cannot tell a proxy from a client
 * that connects directly), so the count is given as the function it stands for; docs/devops/security.md says when
 * it is safe.
 */
function trustHops (hops: number): (address: string, hop: number) => boolean {
  return (_address, hop) => hop < hops
}

/**
 * Builds the application without listening: infrastructure decorators first, then each capability as an
 * encapsulated plugin, in one fixed order. `overrides` lets tests and the server entry set Fastify options
 * (a logger stream, for example).
 */
export async function buildApp (config: Config, overrides: Partial<FastifyServerOptions> = {}): Promise<App> {
  const app = Fastify({
    logger: loggerOptions(config),
    bodyLimit: 64 * 1024,
    trustProxy: typeof config.trustProxy === 'number' ? trustHops(config.trustProxy) : config.trustProxy,
    // Slow clients: a request not fully received in time is answered 408 and closed, so stalled bodies cannot hold
    // connections open. Node checks these timeouts on an interval (30 s by default): a finer one keeps them honest.
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: Math.min(1000, Math.ceil(config.headersTimeoutMs / 2)) },
    // Starting the embedded PostgreSQL and migrating it can take a while on a busy laptop or CI machine.
    pluginTimeout: 120_000,
    // {ISSUER}/o/{slug}/… is an organization's: routed as the same route, its issuer resolved per request.
    rewriteUrl: rewriteOrganizationUrl,
    genReqId: (request) => {
      const given = request.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // Unknown members are refused (400), not silently dropped: a typo must not look like success.
    // strictNumbers off: with it on, Ajv coerces ?limit=1e400 to Infinity and then skips minimum/maximum for a
    // non-finite number, so Infinity reached SQL (a 500); off, the bounds are checked and refuse it (a 400).
    // allowUnionTypes: the StorableJson schemas list every JSON type, so coercion never rewrites a metadata value.
    ajv: { customOptions: { allErrors: false, removeAdditional: false, strictNumbers: false, allowUnionTypes: true } },
    // A URL that is not validly percent-encoded is refused before routing: answer it like every other 400.
    // Framework answers skip the hooks: they get the hooks' headers here.
    frameworkErrors: (error, request, reply) => {
      reply.header('x-request-id', request.id)
      setSecurityHeaders(config, request, reply)
      handleError(error, request, reply)
    },
    ...overrides
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // Request bodies are never decoded: one declared compressed would be parsed as if it were not, and a proxy that
    // does decode it would see another request than the application. Refused (RFC 9110 §8.4.1: 415).
    const coding = request.headers['content-encoding']
    if (coding !== undefined && coding.trim().toLowerCase() !== 'identity' && hasBody(request.headers)) {
      throw Object.assign(new Error('request bodies are not accepted with a Content-Encoding'), { statusCode: 415 })
    }
  })
  // Set last (onSend), so that answers of the error and 404 handlers carry them too.
  app.addHook('onSend', async (request, reply, payload) => {
    setSecurityHeaders(config, request, reply)
    return payload
  })
  app.setErrorHandler(handleError)
  app.setNotFoundHandler(handleNotFound)

  // Infrastructure, decorated on the root (fastify-plugin): every capability below sees it.
  await app.register(configPlugin, { config })
  await app.register(metrics)
  // Keys first: a bad key stops the start before any connection is opened.
  await app.register(keys)
  await app.register(postgres)
  await app.register(redis)
  await app.register(rateLimit)
  // What capabilities publish to each other, decorated on the root in dependency order: the issuer context, the
  // DPoP proof checks, the revocation state, the audit trail, Bearer and DPoP authentication of the management API,
  // client authentication of the OAuth endpoints, verification of federated (RFC 7523 §2.1) assertions.
  await app.register(issuerContext)
  await app.register(organizationIssuers)
  await app.register(dpopProofs)
  await app.register(revocationState)
  await app.register(auditTrail)
  await app.register(bearerAuthentication)
  await app.register(clientAuthentication)
  await app.register(clientFederation)
  await app.register(cors, {
    origin: config.corsOrigin === '*' ? '*' : config.corsOrigin,
    exposedHeaders: ['x-request-id', 'retry-after', 'www-authenticate', 'dpop-nonce'],
    // An OPTIONS without Origin and Access-Control-Request-Method is no browser preflight; the strict answer would
    // be a text/plain 400, the one error body that is not JSON. A 204 with the CORS headers gives nothing away.
    strictPreflight: false
  })
  await app.register(docs)

  // Capabilities, encapsulated, in order. Adding one is a folder under plugins/ and a line here.
  await app.register(operations)
  await app.register(clients)
  await app.register(auditEvents)
  await app.register(tokens)
  await app.register(revocation)
  await app.register(organizations)
  await app.register(oidc)
  await app.register(webhooks)
  await app.register(reports)
  // Background work of one replica or several (each pass takes its work row by row, or per organization under a lock).
  await app.register(credentialExpiryScan)
  await app.register(auditRetention)
  // The webhook delivery worker: registered last, so it stops first when the app closes, before the pool ends.
  await app.register(webhookDelivery)

  return app
}
