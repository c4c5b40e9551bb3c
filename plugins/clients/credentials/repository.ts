import type { Queryable } from '../../../src/database.js'
import type { CredentialType, PublicJwk } from '../../../schemas/credentials.js'
import type { FederationRule } from './federated.js'

/** A credentials row without its hash: what every read except verification needs. */
export interface CredentialRow {
  id: string
  agent_id: string
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
  /** The credential of BOOTSTRAP_CLIENT_SECRET (sql/0008): set at start-up only. */
  bootstrap: boolean
  /** What it holds (sql/0009). */
  type: CredentialType
  /** private_key_jwt only (sql/0010): the public key and its RFC 7638 thumbprint; null for a secret. */
  public_jwk: PublicJwk | null
  jwk_thumbprint: string | null
  /** federated only (sql/0014): its trust rule, where the read joins it (listCredentials); null otherwise. */
  federation?: FederationRule | null
}

/** A credential with its argon2id hash, for the few callers that verify a secret. */
export interface CredentialWithHash extends CredentialRow {
  secret_hash: string
}

// Every column of a CredentialRow: never the hash.
const COLUMNS = 'id, agent_id, created_at, expires_at, revoked_at, last_used_at, bootstrap, type, public_jwk, jwk_thumbprint'

/**
 * Inserts a credential: a secret's hash (only the hash is ever given to the database), or a public key with its
 * thumbprint (type private_key_jwt).
 */
export async function insertCredential (sql: Queryable, credential: { id: string, agent_id: string, expires_at: Date | null, bootstrap?: boolean } & ({ secret_hash: string } | { public_jwk: PublicJwk, jwk_thumbprint: string } | { federation: FederationRule })): Promise<CredentialRow> {
  const secretHash = 'secret_hash' in credential ? credential.secret_hash : null
  const publicJwk = 'public_jwk' in credential ? credential.public_jwk : null
  const thumbprint = 'jwk_thumbprint' in credential ? credential.jwk_thumbprint : null
  const type: CredentialType = 'federation' in credential ? 'federated' : publicJwk === null ? 'client_secret' : 'private_key_jwt'
  const [row] = await sql<CredentialRow[]>`
    insert into credentials (id, agent_id, secret_hash, expires_at, bootstrap, type, public_jwk, jwk_thumbprint)
    values (${credential.id}, ${credential.agent_id}, ${secretHash}, ${credential.expires_at}, ${credential.bootstrap ?? false},
            ${type}, ${publicJwk === null ? null : sql.json(publicJwk)}, ${thumbprint})
    returning ${sql.unsafe(COLUMNS)}`
  if (!('federation' in credential)) return row as CredentialRow
  const rule = credential.federation
  // org_id is the organization's the transaction works for (inOrganization), by its default.
  await sql`
    insert into federated_credentials (credential_id, issuer, subject, audience, claims, jwks, jwks_uri)
    values (${credential.id}, ${rule.issuer}, ${rule.subject}, ${rule.audience}, ${sql.json(rule.claims as never)},
            ${rule.jwks === null ? null : sql.json(rule.jwks as never)}, ${rule.jwks_uri})`
  return { ...row as CredentialRow, federation: rule }
}

/** Every credential of the agent, live or not, oldest first, a federated one with its trust rule. */
export async function listCredentials (sql: Queryable, agentId: string): Promise<CredentialRow[]> {
  return await sql<CredentialRow[]>`
    select ${sql.unsafe(COLUMNS)},
           case when f.credential_id is null then null
                else jsonb_build_object('issuer', f.issuer, 'subject', f.subject, 'audience', f.audience, 'claims', f.claims, 'jwks', f.jwks, 'jwks_uri', f.jwks_uri) end as federation
    from credentials left join federated_credentials f on f.credential_id = credentials.id
    where agent_id = ${agentId}
    order by id`
}

/**
 * Whether the organization holds a live federated credential with exactly this rule's issuer, subject and claims:
 * a second would make every token it accepts ambiguous. Takes a transaction-scoped lock on the pair first, so two
 * registrations of the same rule cannot both see none.
 */
export async function liveFederationRuleExists (sql: Queryable, rule: Pick<FederationRule, 'issuer' | 'subject' | 'claims'>): Promise<boolean> {
  await sql`select pg_advisory_xact_lock(hashtextextended(concat_ws(' ', current_org_id(), ${rule.issuer}::text, ${rule.subject}::text), 0))`
  const rows = await sql`
    select 1 from federated_credentials f join credentials c on c.id = f.credential_id
    where f.org_id = current_org_id() and f.issuer = ${rule.issuer} and f.subject = ${rule.subject} and f.claims = ${sql.json(rule.claims as never)}
      and c.revoked_at is null and (c.expires_at is null or c.expires_at > now())
    limit 1`
  return rows.length > 0
}

/** A live federated credential of an active agent whose issuer and subject a presented token names. */
export interface FederatedTrustRow extends FederationRule {
  credential_id: string
  expires_at: Date | null
  agent_id: string
  client_id: string
  scopes: string[]
  resources: string[]
  dpop_bound_access_tokens: boolean
}

// Rules that share one issuer and subject differ in their claims: a handful at most.
const MAX_TRUSTS_TRIED = 10

/**
 * The live federated credentials of active agents of an active organization, the one the transaction works for,
 * with exactly this issuer and subject: the only candidates a token naming them can match.
 */
export async function federatedTrustsOf (sql: Queryable, issuer: string, subject: string): Promise<FederatedTrustRow[]> {
  return await sql<FederatedTrustRow[]>`
    select f.credential_id, f.issuer, f.subject, f.audience, f.claims, f.jwks, f.jwks_uri, c.expires_at,
           a.id as agent_id, a.client_id, a.scopes, a.resources, a.dpop_bound_access_tokens
    from federated_credentials f
      join credentials c on c.id = f.credential_id
      join agents a on a.id = c.agent_id
      join organizations o on o.id = a.org_id
    where f.org_id = current_org_id() and f.issuer = ${issuer} and f.subject = ${subject}
      and c.revoked_at is null and (c.expires_at is null or c.expires_at > now()) and a.status = 'active' and o.status = 'active'
    order by f.credential_id
    limit ${MAX_TRUSTS_TRIED}`
}

/** The credential if it belongs to the agent, else undefined. */
export async function findCredential (sql: Queryable, agentId: string, credentialId: string): Promise<CredentialRow | undefined> {
  const [row] = await sql<CredentialRow[]>`
    select ${sql.unsafe(COLUMNS)}
    from credentials where id = ${credentialId} and agent_id = ${agentId}`
  return row
}

/** The agent's client_secret credentials that are neither revoked nor expired, with their hashes. */
export async function liveCredentialsWithHash (sql: Queryable, agentId: string): Promise<CredentialWithHash[]> {
  return await sql<CredentialWithHash[]>`
    select secret_hash, ${sql.unsafe(COLUMNS)}
    from credentials
    where agent_id = ${agentId} and type = 'client_secret' and revoked_at is null and (expires_at is null or expires_at > now())
    order by id`
}

/** The live (not revoked, not expired) private_key_jwt keys of an agent, oldest first: what its DID document lists. */
export async function liveKeysOfAgent (sql: Queryable, agentId: string): Promise<Array<{ public_jwk: PublicJwk, jwk_thumbprint: string }>> {
  return await sql<Array<{ public_jwk: PublicJwk, jwk_thumbprint: string }>>`
    select public_jwk, jwk_thumbprint from credentials
    where agent_id = ${agentId} and type = 'private_key_jwt' and revoked_at is null and (expires_at is null or expires_at > now())
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

/** Marks the credential as the one of BOOTSTRAP_CLIENT_SECRET (a credential the bootstrap made before sql/0008). */
export async function markBootstrapCredential (sql: Queryable, credentialId: string): Promise<void> {
  await sql`update credentials set bootstrap = true where id = ${credentialId}`
}

/** Revokes every credential of the agent not revoked yet; returns the ids this call revoked. */
export async function revokeAllCredentials (sql: Queryable, agentId: string, at = new Date()): Promise<string[]> {
  const rows = await sql<Array<{ id: string }>>`
    update credentials set revoked_at = ${at}
    where agent_id = ${agentId} and revoked_at is null
    returning id`
  return rows.map((row) => row.id)
}

/** What client authentication needs of one credential and its agent. */
export interface ClientCredentialRow {
  agent_id: string
  client_id: string
  agent_status: 'active' | 'suspended' | 'decommissioned'
  scopes: string[]
  resources: string[]
  /** Whether the agent's tokens must be DPoP-bound (sql/0013). */
  dpop_bound_access_tokens: boolean
  credential_id: string
  secret_hash: string
  expires_at: Date | null
  bootstrap: boolean
}

/**
 * The live (not revoked, not expired) client_secret credentials of the agent with this client_id, with their
 * hashes: only the one with `credentialId` when given. At most two rows, which is all client authentication needs
 * to decide: the bootstrap credential first, as a secret that names no credential is the bootstrap admin's.
 */
export async function liveCredentialsOfClient (sql: Queryable, clientId: string, credentialId?: string): Promise<ClientCredentialRow[]> {
  return await sql<ClientCredentialRow[]>`
    select a.id as agent_id, a.client_id, case when o.status = 'active' then a.status else 'organization_' || o.status end as agent_status, a.scopes, a.resources, a.dpop_bound_access_tokens,
           c.id as credential_id, c.secret_hash, c.expires_at, c.bootstrap
    from agents a join credentials c on c.agent_id = a.id join organizations o on o.id = a.org_id
    where a.client_id = ${clientId}
      and c.type = 'client_secret' and c.revoked_at is null and (c.expires_at is null or c.expires_at > now())
      ${credentialId === undefined ? sql`` : sql`and c.id = ${credentialId}`}
    order by c.bootstrap desc, c.id
    limit 2`
}

/** What client authentication needs of one key credential (private_key_jwt) and its agent. */
export interface ClientKeyRow extends Omit<ClientCredentialRow, 'secret_hash' | 'bootstrap'> {
  public_jwk: PublicJwk
  jwk_thumbprint: string
}

// A client registers a few keys at most (rotation); more are not tried for one assertion.
const MAX_KEYS_TRIED = 10

/**
 * The live private_key_jwt credentials of the agent with this client_id: those whose kid or thumbprint is `kid`
 * when given, else all of them, oldest first.
 */
export async function liveKeysOfClient (sql: Queryable, clientId: string, kid?: string): Promise<ClientKeyRow[]> {
  return await sql<ClientKeyRow[]>`
    select a.id as agent_id, a.client_id, case when o.status = 'active' then a.status else 'organization_' || o.status end as agent_status, a.scopes, a.resources, a.dpop_bound_access_tokens,
           c.id as credential_id, c.public_jwk, c.jwk_thumbprint, c.expires_at
    from agents a join credentials c on c.agent_id = a.id join organizations o on o.id = a.org_id
    where a.client_id = ${clientId}
      and c.type = 'private_key_jwt' and c.revoked_at is null and (c.expires_at is null or c.expires_at > now())
      ${kid === undefined ? sql`` : sql`and (c.jwk_thumbprint = ${kid} or c.public_jwk->>'kid' = ${kid})`}
    order by c.id
    limit ${MAX_KEYS_TRIED}`
}

/**
 * Marks the jti of a client assertion used, atomically: true when this call marked it, false when it was already
 * used by an assertion that may still be valid. A mark whose assertion has expired is taken over.
 */
export async function markAssertionUsed (sql: Queryable, clientId: string, jti: string, expiresAt: Date): Promise<boolean> {
  const rows = await sql`
    insert into client_assertion_jtis (client_id, jti, expires_at) values (${clientId}, ${jti}, ${expiresAt})
    on conflict (org_id, client_id, jti) do update set expires_at = excluded.expires_at
      where client_assertion_jtis.expires_at <= now()
    returning 1`
  return rows.length === 1
}

/** Forgets the jtis of assertions that can no longer be valid. */
export async function forgetExpiredAssertions (sql: Queryable): Promise<void> {
  await sql`delete from client_assertion_jtis where expires_at <= now()`
}

/** The current standing of a credential and its agent, for re-checking a cached verification. */
export async function clientStanding (sql: Queryable, credentialId: string): Promise<Omit<ClientCredentialRow, 'secret_hash'> & { revoked_at: Date | null } | undefined> {
  const [row] = await sql<Array<Omit<ClientCredentialRow, 'secret_hash'> & { revoked_at: Date | null }>>`
    select a.id as agent_id, a.client_id, case when o.status = 'active' then a.status else 'organization_' || o.status end as agent_status, a.scopes, a.resources, a.dpop_bound_access_tokens,
           c.id as credential_id, c.expires_at, c.revoked_at
    from credentials c join agents a on a.id = c.agent_id join organizations o on o.id = a.org_id
    where c.id = ${credentialId}`
  return row
}

/**
 * Records when credentials of any organizations were last used (at most about once a minute each; see client
 * authentication), in one statement whatever the number of organizations (sql/0017).
 */
export async function touchLastUsed (sql: Queryable, uses: Array<{ orgId: string, credentialId: string }>, at: Date): Promise<void> {
  const byOrganization = new Map<string, string[]>()
  for (const { orgId, credentialId } of uses) {
    const ids = byOrganization.get(orgId)
    if (ids === undefined) byOrganization.set(orgId, [credentialId])
    else ids.push(credentialId)
  }
  await sql`
    select credentials_touch_last_used(${[...byOrganization.keys()]}::uuid[], ${[...byOrganization.values()].map((ids) => ids.length)}::int[],
      ${[...byOrganization.values()].flat()}::uuid[], ${at})`
}

/** A credential whose expiry an event records (credential.expiring or credential.expired). */
export interface ExpiryRow {
  id: string
  agent_id: string
  type: CredentialType
  expires_at: Date
}

// Per organization and pass: the next pass takes the rest.
const EXPIRY_BATCH = 1000

/**
 * Marks the live credentials of the transaction's organization that expire within `warningSeconds` and were not
 * warned of yet, and returns them: each is returned once, whichever replica asks (rows another pass holds are skipped).
 */
export async function markExpiring (sql: Queryable, warningSeconds: number): Promise<ExpiryRow[]> {
  return await sql<ExpiryRow[]>`
    update credentials set expiry_warned_at = now()
    where id in (
      select id from credentials
      where org_id = current_org_id() and revoked_at is null and expiry_warned_at is null and expiry_recorded_at is null
        and expires_at > now() and expires_at <= now() + make_interval(secs => ${warningSeconds})
      order by expires_at limit ${EXPIRY_BATCH} for update skip locked)
    returning id, agent_id, type, expires_at`
}

/** Marks the credentials of the transaction's organization that have expired (not revoked) since the last pass, once each. */
export async function markExpired (sql: Queryable): Promise<ExpiryRow[]> {
  return await sql<ExpiryRow[]>`
    update credentials set expiry_recorded_at = now()
    where id in (
      select id from credentials
      where org_id = current_org_id() and revoked_at is null and expiry_recorded_at is null and expires_at <= now()
      order by expires_at limit ${EXPIRY_BATCH} for update skip locked)
    returning id, agent_id, type, expires_at`
}
