import type { Queryable } from '../../../src/database.js'

/** An agent_delegations row (sql/0018). */
export interface DelegationRow {
  id: string
  agent_id: string
  actor_id: string
  scopes: string[]
  expires_at: Date | null
  created_at: Date
  created_by: string
}

/** Inserts a delegation; undefined when the pair already has one (unique per subject and actor). */
export async function insertDelegation (sql: Queryable, row: Omit<DelegationRow, 'created_at'>): Promise<DelegationRow | undefined> {
  const [inserted] = await sql<DelegationRow[]>`
    insert into agent_delegations (id, agent_id, actor_id, scopes, expires_at, created_by)
    values (${row.id}, ${row.agent_id}, ${row.actor_id}, ${sql.array(row.scopes)}::text[], ${row.expires_at}, ${row.created_by})
    on conflict (org_id, agent_id, actor_id) do nothing
    returning *`
  return inserted
}

/** The delegations the subject agent granted, oldest first (one per actor, so as many as the organization has agents). */
export async function listDelegations (sql: Queryable, agentId: string): Promise<DelegationRow[]> {
  return await sql<DelegationRow[]>`select * from agent_delegations where agent_id = ${agentId} order by id`
}

/** Deletes one delegation of the subject agent; the row deleted, or undefined when there was none. */
export async function deleteDelegation (sql: Queryable, agentId: string, id: string): Promise<DelegationRow | undefined> {
  const [row] = await sql<DelegationRow[]>`delete from agent_delegations where id = ${id} and agent_id = ${agentId} returning *`
  return row
}

/**
 * The scopes the actor may use for the subject now: those of an unexpired delegation between them, of a subject
 * that is active; undefined when there is none.
 */
export async function liveDelegationScopes (sql: Queryable, agentId: string, actorId: string): Promise<string[] | undefined> {
  const [row] = await sql<Array<{ scopes: string[] }>>`
    select d.scopes from agent_delegations d join agents a on a.id = d.agent_id
    where d.agent_id = ${agentId} and d.actor_id = ${actorId} and a.status = 'active'
      and (d.expires_at is null or d.expires_at > now())`
  return row?.scopes
}
