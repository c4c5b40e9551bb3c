import type { Queryable } from '../../src/database.js'

/** An organizations row. */
export interface OrganizationRow {
  id: string
  slug: string
  name: string
  status: 'active' | 'suspended' | 'deleted'
  tokens_invalid_before: Date | null
  created_at: Date
  updated_at: Date
}

/** An organization_keys row: the private key still sealed. */
export interface OrganizationKeyRow {
  kid: string
  alg: string
  public_jwk: Record<string, unknown>
  sealed_private: string
  activates_at: Date
  retired_at: Date | null
}

export async function insertOrganization (sql: Queryable, organization: { id: string, slug: string, name: string }): Promise<OrganizationRow> {
  const [row] = await sql<OrganizationRow[]>`
    insert into organizations (id, slug, name) values (${organization.id}, ${organization.slug}, ${organization.name})
    on conflict (slug) do nothing
    returning *`
  return row as OrganizationRow
}

/** The organization with this slug (deleted ones too: their slug is never reused), or undefined. */
export async function findOrganizationBySlug (sql: Queryable, slug: string): Promise<OrganizationRow | undefined> {
  const [row] = await sql<OrganizationRow[]>`select * from organizations where slug = ${slug}`
  return row
}

export async function findOrganization (sql: Queryable, id: string, lock?: 'update'): Promise<OrganizationRow | undefined> {
  const [row] = await sql<OrganizationRow[]>`select * from organizations where id = ${id} ${lock === 'update' ? sql`for update` : sql``}`
  return row
}

/** A page in creation order (ids are UUIDv7), after the id given. */
export async function listOrganizations (sql: Queryable, { after, limit }: { after?: string, limit: number }): Promise<OrganizationRow[]> {
  return await sql<OrganizationRow[]>`
    select * from organizations ${after === undefined ? sql`` : sql`where id > ${after}`}
    order by id limit ${limit}`
}

export async function updateOrganization (sql: Queryable, id: string, changes: { name?: string, status?: OrganizationRow['status'] }, at: Date): Promise<OrganizationRow> {
  const [row] = await sql<OrganizationRow[]>`
    update organizations set
      name = coalesce(${changes.name ?? null}, name),
      status = coalesce(${changes.status ?? null}, status),
      tokens_invalid_before = case when ${changes.status ?? null}::text in ('suspended', 'deleted') then ${at} else tokens_invalid_before end,
      updated_at = ${at}
    where id = ${id}
    returning *`
  return row as OrganizationRow
}

/**
 * Deletes what a deleted organization owned, except its audit chain (append-only: kept, and still verifiable):
 * credentials, agents, keys, revocations, assertion jtis and webhook subscriptions. Runs in the organization's own transaction.
 */
export async function purgeOrganizationData (sql: Queryable): Promise<void> {
  await sql`delete from credentials`
  await sql`delete from agents`
  await sql`delete from organization_keys`
  await sql`delete from token_revocations`
  await sql`delete from client_assertion_jtis`
  // Webhook subscriptions (their sealed secrets) and, by cascade, their deliveries: nothing is sent for it any more.
  await sql`delete from webhook_subscriptions`
}

/**
 * Locks the webhook subscriptions of the transaction's organization. Deleting an organization takes them before its
 * organizations row: a change to a subscription's `enabled` locks the subscription, then (its trigger, sql/0019) the
 * organization's row, so taking them the other way round could wait in a cycle with it.
 */
export async function lockWebhookSubscriptions (sql: Queryable): Promise<void> {
  await sql`select id from webhook_subscriptions for update`
}

/** The organization's keys still published (not retired), newest first. */
export async function publishedKeys (sql: Queryable): Promise<OrganizationKeyRow[]> {
  return await sql<OrganizationKeyRow[]>`
    select kid, alg, public_jwk, sealed_private, activates_at, retired_at from organization_keys
    where retired_at is null or retired_at > now()
    order by activates_at desc, created_at desc`
}

/** Every key the organization ever had, retired ones too, newest first. */
export async function allKeysOf (sql: Queryable): Promise<OrganizationKeyRow[]> {
  return await sql<OrganizationKeyRow[]>`
    select kid, alg, public_jwk, sealed_private, activates_at, retired_at from organization_keys
    order by activates_at desc, created_at desc`
}

export async function insertOrganizationKey (sql: Queryable, key: { kid: string, alg: string, public_jwk: Record<string, unknown>, sealed_private: string, activates_at: Date }): Promise<void> {
  await sql`
    insert into organization_keys (kid, alg, public_jwk, sealed_private, activates_at)
    values (${key.kid}, ${key.alg}, ${sql.json(key.public_jwk as never)}, ${key.sealed_private}, ${key.activates_at})`
}

/** Sets when the keys signing until `until` leave the JWKS, unless they already leave earlier. */
export async function retireSigningKeys (sql: Queryable, except: string, retiresAt: Date): Promise<Array<{ kid: string }>> {
  return await sql<Array<{ kid: string }>>`
    update organization_keys set retired_at = ${retiresAt}
    where kid <> ${except} and (retired_at is null or retired_at > ${retiresAt})
    returning kid`
}
