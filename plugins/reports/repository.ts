import type { Queryable } from '../../src/database.js'
import type { AgentStatus } from '../../schemas/agents.js'

/**
 * What the access review reads, in the transaction's organization (inOrganization): agents, credentials and
 * federation rules as they are now, and from the audit trail who created each credential, each agent's last
 * review and the grants of the review period. Read-only; the owning capabilities write these rows.
 */

export interface ReviewAgentRow {
  id: string
  client_id: string
  name: string
  status: AgentStatus
  owner: string | null
  scopes: string[]
  resources: string[]
  created_at: Date
}

export interface ReviewCredentialRow {
  id: string
  agent_id: string
  type: string
  created_at: Date
  last_used_at: Date | null
  expires_at: Date | null
  revoked_at: Date | null
  live: boolean
  issuer: string | null
  subject: string | null
  audience: string | null
  claims: Record<string, unknown> | null
}

export async function reviewAgents (sql: Queryable): Promise<ReviewAgentRow[]> {
  return await sql<ReviewAgentRow[]>`select id, client_id, name, status, owner, scopes, resources, created_at from agents order by id`
}

export async function reviewCredentials (sql: Queryable): Promise<ReviewCredentialRow[]> {
  return await sql<ReviewCredentialRow[]>`
    select c.id, c.agent_id, c.type, c.created_at, c.last_used_at, c.expires_at, c.revoked_at,
           (c.revoked_at is null and (c.expires_at is null or c.expires_at > now())) as live,
           f.issuer, f.subject, f.audience, f.claims
    from credentials c left join federated_credentials f on f.credential_id = c.id
    order by c.id`
}

/** The actor of each credential's credential.created event still in the table. */
export async function credentialCreators (sql: Queryable): Promise<Map<string, string>> {
  const rows = await sql<Array<{ credential_id: string, actor: string }>>`
    select data->>'credential_id' as credential_id, actor from audit_events
    where org_id = current_org_id() and type = 'credential.created'`
  return new Map(rows.map((row) => [row.credential_id, row.actor]))
}

export interface ReviewEventRow {
  agent_id: string
  actor: string
  occurred_at: Date
  data: { decision?: string, note?: string | null }
}

/** Each agent's last agent.reviewed event. */
export async function lastReviews (sql: Queryable): Promise<Map<string, ReviewEventRow>> {
  const rows = await sql<ReviewEventRow[]>`
    select distinct on (agent_id) agent_id, actor, occurred_at, data from audit_events
    where org_id = current_org_id() and type = 'agent.reviewed' and agent_id is not null
    order by agent_id, seq desc`
  return new Map(rows.map((row) => [row.agent_id, row]))
}

export interface GrantEventRow {
  agent_id: string
  type: 'agent.created' | 'agent.updated'
  data: { scopes?: string[] | { from: string[], to: string[] } }
}

/** agent.created and agent.updated events that set scopes, from `since` on. */
export async function scopeGrantsSince (sql: Queryable, since: Date): Promise<GrantEventRow[]> {
  return await sql<GrantEventRow[]>`
    select agent_id, type, data from audit_events
    where org_id = current_org_id() and occurred_at >= ${since} and agent_id is not null
      and type in ('agent.created', 'agent.updated') and data ? 'scopes'
    order by seq`
}

export interface KeyEventRow {
  seq: string
  occurred_at: Date
  type: string
  actor: string
  data: Record<string, unknown>
}

/** The signing-key events of the trail still in the table, oldest first. */
export async function keyRotationEvents (sql: Queryable): Promise<KeyEventRow[]> {
  return await sql<KeyEventRow[]>`
    select seq::text, occurred_at, type, actor, data from audit_events
    where org_id = current_org_id() and type in ('key.current', 'key.previous_published', 'key.rotated')
    order by audit_events.seq`
}

/** The oldest event the table still holds, and how many it holds. */
export async function tableExtent (sql: Queryable): Promise<{ events: string, oldest_seq: string | null, oldest_at: Date | null }> {
  const [row] = await sql<Array<{ events: string, oldest_seq: string | null, oldest_at: Date | null }>>`
    select count(*)::text as events, min(seq)::text as oldest_seq, min(occurred_at) as oldest_at
    from audit_events where org_id = current_org_id()`
  return row as { events: string, oldest_seq: string | null, oldest_at: Date | null }
}

export interface ReviewDelegationRow {
  id: string
  agent_id: string
  actor_id: string
  scopes: string[]
  created_at: Date
  created_by: string
  expires_at: Date | null
  live: boolean
}

/** Every delegation of the organization (agent_delegations, sql/0018), live or expired. */
export async function reviewDelegations (sql: Queryable): Promise<ReviewDelegationRow[]> {
  return await sql<ReviewDelegationRow[]>`
    select id, agent_id, actor_id, scopes, created_at, created_by, expires_at, (expires_at is null or expires_at > now()) as live
    from agent_delegations order by created_at, id`
}

/** Every subject trust's issuer and the agents it lets act for that issuer's people (subject_trusts, sql/0018). */
export async function reviewSubjectTrusts (sql: Queryable): Promise<Array<{ id: string, issuer: string, actors: Array<{ agent_id: string, scopes: string[] }> }>> {
  return await sql<Array<{ id: string, issuer: string, actors: Array<{ agent_id: string, scopes: string[] }> }>>`
    select id, issuer, actors from subject_trusts order by created_at, id`
}
