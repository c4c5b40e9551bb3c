import type { FastifyRequest } from 'fastify'

/** Every kind of event the trail records, as a list the query API validates against. */
export const AUDIT_EVENT_TYPES = [
  'agent.created', 'agent.updated', 'agent.suspended', 'agent.reactivated', 'agent.decommissioned', 'agent.reviewed',
  'credential.created', 'credential.revoked', 'credential.expiring', 'credential.expired',
  'delegation.granted', 'delegation.removed', 'subject_trust.created', 'subject_trust.deleted',
  'token.issued', 'token.revoked',
  'auth.failed', 'authz.denied',
  'key.current', 'key.previous_published', 'key.rotated',
  'audit.pruned',
  'organization.created', 'organization.updated', 'organization.suspended', 'organization.reactivated', 'organization.deleted',
  'webhook.created', 'webhook.updated', 'webhook.deleted', 'webhook.secret_rotated', 'webhook.disabled'
] as const

/** Every kind of event the trail records. */
export type AuditEventType = typeof AUDIT_EVENT_TYPES[number]

/** Who acted, from where, in which request. */
export interface AuditActor {
  /** The organization whose chain records the event: the request's, or the one background work acts for. */
  orgId: string
  /** The authenticated agent's client_id (or agent id), or 'anonymous'. */
  actor: string
  ip?: string | null
  requestId?: string | null
}

/** One security-relevant act. `data` never holds a secret or a token. */
export interface AuditEvent extends AuditActor {
  type: AuditEventType
  /** The agent the event is about, when there is one (a UUID). */
  agentId?: string | null
  data?: Record<string, unknown>
}

/** A row as the chain stores it. */
export interface StoredAuditEvent {
  seq: string
  id: string
  occurred_at: Date
  type: string
  agent_id: string | null
  actor: string
  ip: string | null
  request_id: string | null
  data: Record<string, unknown>
  prev_hash: string
  hash: string
}

/** The actor, IP and request id of a request, for its audit events. */
export function actorOf (request: FastifyRequest, actor = 'anonymous'): AuditActor {
  return { orgId: request.issuerContext.orgId, actor, ip: request.ip, requestId: request.id }
}

/** The audit actor of a request that passed requireScopes: the caller's client_id. */
export function principalActor (request: FastifyRequest): AuditActor {
  return actorOf(request, request.principal?.clientId)
}
