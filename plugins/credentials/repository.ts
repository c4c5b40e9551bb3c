import type { Queryable } from '../../src/database.js'

/** A credentials row without its hash: what every read except verification needs. */
export interface CredentialRow {
  id: string
  agent_id: string
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
}

/** A credential with its argon2id hash, for the few callers that verify a secret. */
export interface CredentialWithHash extends CredentialRow {
  secret_hash: string
}

/** Inserts a credential; only the hash of its secret is ever given to the database. */
export async function insertCredential (sql: Queryable, credential: { id: string, agent_id: string, secret_hash: string, expires_at: Date | null }): Promise<CredentialRow> {
  const [row] = await sql<CredentialRow[]>`
    insert into credentials (id, agent_id, secret_hash, expires_at)
    values (${credential.id}, ${credential.agent_id}, ${credential.secret_hash}, ${credential.expires_at})
    returning id, agent_id, created_at, expires_at, revoked_at, last_used_at`
  return row as CredentialRow
}

/** Every credential of the agent, live or not, oldest first. */
export async function listCredentials (sql: Queryable, agentId: string): Promise<CredentialRow[]> {
  return await sql<CredentialRow[]>`
    select id, agent_id, created_at, expires_at, revoked_at, last_used_at
    from credentials where agent_id = ${agentId}
    order by id`
}

/** The credential if it belongs to the agent, else undefined. */
export async function findCredential (sql: Queryable, agentId: string, credentialId: string): Promise<CredentialRow | undefined> {
  const [row] = await sql<CredentialRow[]>`
    select id, agent_id, created_at, expires_at, revoked_at, last_used_at
    from credentials where id = ${credentialId} and agent_id = ${agentId}`
  return row
}

/** The agent's credentials that are neither revoked nor expired, with their hashes. */
export async function liveCredentialsWithHash (sql: Queryable, agentId: string): Promise<CredentialWithHash[]> {
  return await sql<CredentialWithHash[]>`
    select id, agent_id, secret_hash, created_at, expires_at, revoked_at, last_used_at
    from credentials
    where agent_id = ${agentId} and revoked_at is null and (expires_at is null or expires_at > now())
    order by id`
}

/** Revokes the credential if it belongs to the agent and is not revoked yet; true when this call revoked it. */
export async function revokeCredential (sql: Queryable, agentId: string, credentialId: string, at = new Date()): Promise<boolean> {
  const rows = await sql`
    update credentials set revoked_at = ${at}
    where id = ${credentialId} and agent_id = ${agentId} and revoked_at is null
    returning id`
  return rows.length === 1
}

/** Revokes every credential of the agent not revoked yet; returns the ids this call revoked. */
export async function revokeAllCredentials (sql: Queryable, agentId: string, at = new Date()): Promise<string[]> {
  const rows = await sql<Array<{ id: string }>>`
    update credentials set revoked_at = ${at}
    where agent_id = ${agentId} and revoked_at is null
    returning id`
  return rows.map((row) => row.id)
}
