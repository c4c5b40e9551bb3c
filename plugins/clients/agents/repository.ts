import type { Queryable } from '../../../src/database.js'
import type { AgentMetadata, AgentStatus } from '../../../schemas/agents.js'

/** An agents row. */
export interface AgentRow {
  id: string
  client_id: string
  name: string
  description: string | null
  owner: string | null
  scopes: string[]
  /** RFC 8707 resources the agent may name as a token's audience, besides the default one. */
  resources: string[]
  /** Audience names (not URIs) the agent may ask a workload JWT for, by token exchange (sql/0018). */
  audiences: string[]
  status: AgentStatus
  /** RFC 9449 §5.2 (sql/0013): tokens only with a DPoP proof, bound to its key. */
  dpop_bound_access_tokens: boolean
  metadata: AgentMetadata
  created_at: Date
  updated_at: Date
}

/** What a new agent is made of; it starts active and the database fills in the timestamps. */
export type NewAgent = Omit<AgentRow, 'status' | 'dpop_bound_access_tokens' | 'audiences' | 'created_at' | 'updated_at'> & { dpop_bound_access_tokens?: boolean, audiences?: string[] }

/** The columns an update may change. */
export type AgentChanges = Partial<Pick<AgentRow, 'name' | 'description' | 'owner' | 'scopes' | 'resources' | 'audiences' | 'dpop_bound_access_tokens' | 'metadata' | 'status'>>

/** Row locks a caller inside a transaction may take on the agent it reads. */
export type AgentLock = 'update' | 'share'

/** Inserts an agent with status active. */
export async function insertAgent (sql: Queryable, agent: NewAgent): Promise<AgentRow> {
  const [row] = await sql<AgentRow[]>`
    insert into agents (id, client_id, name, description, owner, scopes, resources, audiences, dpop_bound_access_tokens, metadata)
    values (${agent.id}, ${agent.client_id}, ${agent.name}, ${agent.description}, ${agent.owner},
            ${sql.array(agent.scopes)}::text[], ${sql.array(agent.resources)}::text[], ${sql.array(agent.audiences ?? [])}::text[],
            ${agent.dpop_bound_access_tokens ?? false}, ${sql.json(agent.metadata as never)})
    returning *`
  return row as AgentRow
}

/**
 * The agent with this id, or undefined. Inside a transaction, `lock` holds the row until it ends: 'update' for a
 * change of the agent itself, 'share' to keep its status from changing under a dependent insert (a credential).
 */
export async function findAgent (sql: Queryable, id: string, lock?: AgentLock): Promise<AgentRow | undefined> {
  const [row] = await sql<AgentRow[]>`
    select * from agents where id = ${id}
    ${lock === 'update' ? sql`for update` : lock === 'share' ? sql`for share` : sql``}`
  return row
}

/** The agent with this client_id, or undefined; `lock` as for findAgent. */
export async function findAgentByClientId (sql: Queryable, clientId: string, lock?: AgentLock): Promise<AgentRow | undefined> {
  const [row] = await sql<AgentRow[]>`
    select * from agents where client_id = ${clientId}
    ${lock === 'update' ? sql`for update` : sql``}`
  return row
}

/**
 * One page of agents in id order (UUIDv7, so creation order), after the id `after` when given. Keyset, not
 * offset: a page never repeats or skips a row because rows were added before it.
 */
export async function listAgents (sql: Queryable, filter: { status?: AgentStatus, owner?: string, clientId?: string, after?: string, limit: number }): Promise<AgentRow[]> {
  return await sql<AgentRow[]>`
    select * from agents
    where true
      ${filter.after === undefined ? sql`` : sql`and id > ${filter.after}`}
      ${filter.status === undefined ? sql`` : sql`and status = ${filter.status}`}
      ${filter.owner === undefined ? sql`` : sql`and owner = ${filter.owner}`}
      ${filter.clientId === undefined ? sql`` : sql`and client_id = ${filter.clientId}`}
    order by id
    limit ${filter.limit}`
}

/**
 * Applies the changes (at least one) and bumps updated_at; returns the row as it now is. A status change, or a scope
 * or resource taken away or DPoP binding required (`narrowed`), also moves the agent's "not before" watermark to `at`: every token issued up
 * to then stops being valid.
 */
export async function updateAgent (sql: Queryable, id: string, changes: AgentChanges, at = new Date(), narrowed = false): Promise<AgentRow> {
  const values: Record<string, any> = { ...changes }
  if (changes.status !== undefined || narrowed) values.tokens_invalid_before = at
  if (changes.scopes !== undefined) values.scopes = sql.array(changes.scopes)
  if (changes.resources !== undefined) values.resources = sql.array(changes.resources)
  if (changes.audiences !== undefined) values.audiences = sql.array(changes.audiences)
  if (changes.metadata !== undefined) values.metadata = sql.json(changes.metadata as never)
  const [row] = await sql<AgentRow[]>`
    update agents set ${sql(values, Object.keys(values))}, updated_at = now()
    where id = ${id}
    returning *`
  return row as AgentRow
}

/** Whether any agent that is not decommissioned holds the scope. */
export async function anyLiveAgentHolds (sql: Queryable, scope: string): Promise<boolean> {
  const [row] = await sql<Array<{ found: boolean }>>`
    select exists (select 1 from agents where ${scope} = any (scopes) and status <> 'decommissioned') as found`
  return row?.found ?? false
}
