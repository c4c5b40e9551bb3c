import type { FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { conflict, forbidden, type ProblemError } from '../../src/errors.js'
import { ADMIN_SCOPES, AdminScope, managementScopesOf, PLATFORM_SCOPES } from '../../src/scopes.js'
import { refused, type Denial } from '../tokens/public.js'
import type { AgentChanges, AgentRow } from './agents/repository.js'

/**
 * The agent that acts, and the scopes it acts with: on the management API those of its access token (never more
 * than its agent holds: taking a scope away kills the tokens that carry it); at /oauth2/revoke its agent's.
 */
export interface Caller {
  /** The organization the caller acts in (its token's issuer's): it acts on that organization's agents only. */
  orgId: string
  agentId: string
  clientId: string
  scopes: ReadonlySet<string>
}

/** The part of an agent the rules look at. */
export type Target = Pick<AgentRow, 'id' | 'client_id' | 'scopes' | 'status'>

/** What a caller attempts: every act of one agent on another (or on itself) that the privilege rules govern. */
export type AgentAction =
  | { kind: 'agent.create', scopes: string[] }
  | { kind: 'agent.update', target: Target, changes: AgentChanges }
  | { kind: 'agent.decommission', target: Target }
  | { kind: 'credential.create', target: Target }
  | { kind: 'credential.revoke', target: Target, bootstrapCredential: boolean }
  | { kind: 'token.revoke', target: Target }
  | { kind: 'delegation.grant', target: Target, scopes: string[] }
  | { kind: 'delegation.remove', target: Target }

/** Why an action is refused: 403 for authority the caller lacks, 409 for the bootstrap admin. */
export interface Refusal {
  status: 403 | 409
  detail: string
  denial: Denial
}

const list = (scopes: string[]): string => scopes.join(', ')

/** The management scopes among `scopes` that the caller does not hold. */
function notHeld (caller: Caller, scopes: string[]): string[] {
  return managementScopesOf(scopes).filter((scope) => !caller.scopes.has(scope))
}

/** What the bootstrap admin may not undergo through the API, or undefined. */
function bootstrapAdminRefusal (action: AgentAction): string | undefined {
  switch (action.kind) {
    case 'agent.update': {
      if (action.changes.status !== undefined && action.changes.status !== 'active') return `be ${action.changes.status}`
      const stripped = action.changes.scopes === undefined ? [] : ADMIN_SCOPES.filter((scope) => action.changes.scopes?.includes(scope) !== true)
      return stripped.length === 0 ? undefined : `lose the management scopes ${list(stripped)}`
    }
    case 'agent.decommission': return 'be decommissioned'
    case 'credential.create': return 'be given a credential'
    case 'credential.revoke': return action.bootstrapCredential ? 'lose the credential of BOOTSTRAP_CLIENT_SECRET' : undefined
    default: return undefined
  }
}

/**
 * The privilege rules, in one place (docs/devops/security.md has them as a table):
 * - another agent's token is revoked only by an agents:write holder;
 * - an agent grants (creates or patches an agent with, or delegates) only the management scopes it holds;
 * - an agent acts on an agent (itself included) only when that agent's management scopes are a subset of its own;
 * - the live agent named by BOOTSTRAP_CLIENT_ID is not suspended, decommissioned, stripped of management scopes,
 *   given a credential or stripped of its BOOTSTRAP_CLIENT_SECRET credential through the API: the configuration
 *   governs it (a 409, checked after authority, so a caller without authority learns nothing more).
 * Application scopes are outside these rules: any agents:write holder grants them.
 * Returns the refusal, or undefined when the action is allowed.
 */
export function refusalOf (config: Pick<Config, 'bootstrapClientId'>, caller: Caller, action: AgentAction): Refusal | undefined {
  const target = 'target' in action ? action.target : undefined
  const deny = (status: 403 | 409, detail: string, reason: string, missingScopes?: string[]): Refusal => ({
    status,
    detail,
    denial: { actor: caller.clientId, actorAgentId: caller.agentId, action: action.kind, reason, agentId: target?.id, missingScopes }
  })

  // Another agent's token is revoked by agents:write holders only (the management API's routes check their scope).
  if (action.kind === 'token.revoke' && !caller.scopes.has(AdminScope.AgentsWrite)) {
    return deny(403, `revoking another agent's token needs the scope ${AdminScope.AgentsWrite}`, 'insufficient_scope', [AdminScope.AgentsWrite])
  }
  if (target !== undefined) {
    const missing = notHeld(caller, target.scopes)
    if (missing.length > 0) {
      return deny(403, `agent ${target.id} holds the management scopes ${list(missing)}, which the caller does not: an agent acts only on agents whose management scopes are a subset of its own`, 'management_scope_not_held', missing)
    }
  }
  const granted = action.kind === 'agent.create' || action.kind === 'delegation.grant' ? action.scopes : action.kind === 'agent.update' ? action.changes.scopes ?? [] : []
  const platform = caller.orgId === DEFAULT_ORG_ID ? [] : granted.filter((scope) => PLATFORM_SCOPES.includes(scope))
  if (platform.length > 0) {
    return deny(403, `${list(platform)} are the platform's scopes: they are held in the default organization only, never granted in another`, 'platform_scope', platform)
  }
  const ungrantable = notHeld(caller, granted)
  if (ungrantable.length > 0) {
    return deny(403, `the caller does not hold the management scopes ${list(ungrantable)}: an agent grants only the management scopes it holds itself`, 'management_scope_not_held', ungrantable)
  }
  if (target !== undefined && caller.orgId === DEFAULT_ORG_ID && target.client_id === config.bootstrapClientId && target.status !== 'decommissioned') {
    const what = bootstrapAdminRefusal(action)
    if (what !== undefined) {
      return deny(409, `agent ${target.id} is the bootstrap admin (BOOTSTRAP_CLIENT_ID): it cannot ${what} through the API. BOOTSTRAP_CLIENT_ID and BOOTSTRAP_CLIENT_SECRET govern it: to rotate its secret or retire it, change them and restart`, 'bootstrap_admin')
    }
  }
  return undefined
}

/** The management API's answer to a refusal: problem+json, 403 naming the missing scopes or 409, recorded as authz.denied. */
function refusalProblem (refusal: Refusal): ProblemError {
  const problem = refusal.status === 403 ? forbidden(refusal.detail, refusal.denial.missingScopes) : conflict(refusal.detail)
  return refused(problem, refusal.denial)
}

/** Throws the management API's refusal unless the privilege rules allow the action (see refusalOf). */
export function authorize (config: Pick<Config, 'bootstrapClientId'>, caller: Caller, action: AgentAction): void {
  const refusal = refusalOf(config, caller, action)
  if (refusal !== undefined) throw refusalProblem(refusal)
}

/** The caller of a request that passed requireScopes, as the privilege rules see it: its token's agent and scopes. */
export function principalCaller (request: FastifyRequest): Caller {
  const principal = request.principal
  // requireScopes runs as preValidation on every management route: a handler without a principal is a wiring bug.
  if (principal === undefined) throw new Error(`${request.method} ${request.routeOptions.url ?? ''} has no authenticated principal`)
  return { orgId: request.issuerContext.orgId, agentId: principal.agentId, clientId: principal.clientId, scopes: principal.scopes }
}
