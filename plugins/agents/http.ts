import type { FastifyContextConfig, FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import { actorOf, type AuditActor } from '../infra/audit.js'
import type { Caller } from './authorization.js'

/** Route config of a management API route: RATE_LIMIT_API_PER_MIN per IP, none when it is 0. */
export function managementRouteConfig (config: Config): FastifyContextConfig {
  const max = config.rateLimit.apiPerMinute
  return max === 0 ? {} : { rateLimit: { max, timeWindow: 60_000 } } as FastifyContextConfig
}

/** The audit actor of a request that passed requireScopes: the caller's client_id. */
export function principalActor (request: FastifyRequest): AuditActor {
  return actorOf(request, request.principal?.clientId)
}

/** The caller of a request that passed requireScopes, as the privilege rules see it: its token's agent and scopes. */
export function principalCaller (request: FastifyRequest): Caller {
  const principal = request.principal
  // requireScopes runs as preValidation on every management route: a handler without a principal is a wiring bug.
  if (principal === undefined) throw new Error(`${request.method} ${request.routeOptions.url ?? ''} has no authenticated principal`)
  return { agentId: principal.agentId, clientId: principal.clientId, scopes: principal.scopes }
}
