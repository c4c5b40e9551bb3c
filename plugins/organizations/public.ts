/** What the organizations capability publishes to the others: which organizations exist, and their signing keys. */
import { DEFAULT_ORG_ID, inOrganization, type Queryable, type Sql } from '../../src/database.js'
import type { PublicSigningKey, SigningKeys } from '../infra/keys.js'
import { allKeysOf, publishedKeys } from './repository.js'
import { publishedKeyOf, signingKeysOf } from './signing-keys.js'

/** An organization as background work sees it: its id and slug. */
export interface OrganizationRef { id: string, slug: string }

/**
 * Every organization that is not deleted, in creation order: what per-organization background work walks. The
 * organizations table has no row-level security (it is how an organization is found before any is set).
 */
export async function liveOrganizations (sql: Queryable): Promise<OrganizationRef[]> {
  return await sql<OrganizationRef[]>`select id, slug from organizations where status <> 'deleted' order by id`
}

/** Every organization, deleted ones too (their audit chains are kept), in creation order. */
export async function allOrganizations (sql: Queryable): Promise<OrganizationRef[]> {
  return await sql<OrganizationRef[]>`select id, slug from organizations order by id`
}

/**
 * The keys an organization's issuer signs with now: `defaultKeys` (JWT_PRIVATE_KEY) for the default organization,
 * its own for another (opened with KEY_ENCRYPTION_KEY). Undefined when it has no active key or none can be opened.
 */
export async function organizationSigningKeys (sql: Sql, kek: Buffer | undefined, defaultKeys: SigningKeys, orgId: string): Promise<SigningKeys | undefined> {
  if (orgId === DEFAULT_ORG_ID) return defaultKeys
  if (kek === undefined) return undefined
  const rows = await inOrganization(sql, orgId, async (tx) => await publishedKeys(tx))
  return signingKeysOf(kek, orgId, rows)
}

/**
 * Every public key an organization's issuer has signed with, retired ones included, by kid: what verifies a
 * signature it made long ago (an audit checkpoint). The default organization's are the configured ones.
 */
export async function organizationVerificationKeys (sql: Sql, defaultKeys: Pick<SigningKeys, 'byKid'>, orgId: string): Promise<Map<string, PublicSigningKey>> {
  if (orgId === DEFAULT_ORG_ID) return defaultKeys.byKid
  const rows = await inOrganization(sql, orgId, async (tx) => await allKeysOf(tx))
  return new Map(rows.map((row) => [row.kid, publishedKeyOf(row)]))
}
