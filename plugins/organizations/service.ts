import type { FastifyInstance } from 'fastify'
import { DEFAULT_ORG_ID, inOrganization, switchOrganization } from '../../src/database.js'
import { decodeCursor, encodeCursor } from '../../src/cursor.js'
import { badRequest, conflict, notFound } from '../../src/errors.js'
import { newId } from '../../src/ids.js'
import { ORGANIZATION_ADMIN_SCOPES } from '../../src/scopes.js'
import { hashSecret } from '../../src/secrets.js'
import { UUID_PATTERN } from '../../schemas/common.js'
import type {
  CreatedOrganization, CreateOrganizationBody, ListOrganizationsQuery, Organization, OrganizationPage, RotatedKey, RotateKeyBody, UpdateOrganizationBody
} from '../../schemas/organizations.js'
import type { AuditActor, AuditEvent } from '../audit/public.js'
import { insertAdminAgent } from '../clients/public.js'
import { publishChanges } from '../revocation/public.js'
import {
  findOrganization, insertOrganization, insertOrganizationKey, listOrganizations, lockWebhookSubscriptions, publishedKeys, purgeOrganizationData,
  retireSigningKeys, updateOrganization, type OrganizationRow
} from './repository.js'
import { generateOrganizationKey } from './signing-keys.js'

// A verifier that fetched the JWKS just before a rotation may take this long to fetch it again (jose's cooldown is
// 30 s): a retired key stays published this much longer than the last token it signed.
const RETIREMENT_MARGIN_S = 300

const UUID = new RegExp(UUID_PATTERN)

/** Organizations (platform administration, in the default organization) and an organization's own key rotation. */
export function organizationService (app: FastifyInstance, forget: (slug: string) => void) {
  const issuerOf = (row: OrganizationRow): string => row.id === DEFAULT_ORG_ID ? app.config.issuer : `${app.config.issuer}/o/${row.slug}`
  const toOrganization = (row: OrganizationRow): Organization => ({
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    issuer: issuerOf(row),
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString()
  })

  function requireKeyEncryptionKey (): Buffer {
    if (app.keyEncryptionKey === undefined) throw conflict('KEY_ENCRYPTION_KEY is not set: organizations keep their signing keys sealed under it; set it (openssl rand -base64 32) and restart')
    return app.keyEncryptionKey
  }

  async function existing (id: string): Promise<OrganizationRow> {
    const row = await findOrganization(app.sql, id)
    if (row === undefined || row.status === 'deleted') throw notFound(`no organization ${id}`)
    return row
  }

  return {
    /**
     * Creates an active organization with its own signing key and its first admin agent, in one transaction: the
     * organization.created event in the default organization's chain, the admin's creation in the new one's.
     */
    async create (body: CreateOrganizationBody, actor: AuditActor): Promise<CreatedOrganization> {
      const kek = requireKeyEncryptionKey()
      const id = newId()
      const key = await generateOrganizationKey(kek, id, app.keys.current.alg)
      const orgActor: AuditActor = { ...actor, orgId: id }
      const created = await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => {
        const row = await insertOrganization(tx, { id, slug: body.slug, name: body.name })
        if (row === undefined) throw conflict(`the slug ${body.slug} is taken (slugs of deleted organizations are never reused)`)
        await app.audit.recordIn(tx, { type: 'organization.created', ...actor, data: { organization_id: id, slug: row.slug, name: row.name } })
        // The default organization's chain lock is taken first, then the new one's: the group commit locks chains
        // in the order of their ids too, and the default's id is the lowest.
        await switchOrganization(tx, id)
        await insertOrganizationKey(tx, { ...key, activates_at: new Date() })
        const admin = await insertAdminAgent(tx, ORGANIZATION_ADMIN_SCOPES, orgActor, hashSecret)
        const events: AuditEvent[] = [
          { type: 'key.rotated', ...orgActor, data: { kid: key.kid, alg: key.alg, previous_kid: null } },
          ...admin.events
        ]
        await app.audit.recordIn(tx, ...events)
        return { row, admin }
      })
      // A request for the slug before it existed left "no such organization" in this replica's cache.
      forget(created.row.slug)
      return {
        ...toOrganization(created.row),
        admin: { agent_id: created.admin.agent.id, client_id: created.admin.agent.client_id, client_secret: created.admin.secret }
      }
    },

    async list (query: ListOrganizationsQuery): Promise<OrganizationPage> {
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, UUID)
      const rows = (await listOrganizations(app.sql, { after, limit: query.limit + 1 }))
      const items = rows.slice(0, query.limit)
      const last = items.at(-1)
      return { items: items.map(toOrganization), next_cursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.id) : null }
    },

    async get (id: string): Promise<Organization> {
      return toOrganization(await existing(id))
    },

    /**
     * Renames, suspends or reactivates. Suspension refuses the organization's clients and kills every token its
     * issuer issued before, on every replica at once (revoked:org:{id}); reactivation does not revive them.
     */
    async update (id: string, body: UpdateOrganizationBody, actor: AuditActor): Promise<Organization> {
      if (Object.keys(body).length === 0) throw badRequest('the body names no member to change', [{ location: 'body', message: 'must name at least one of name, status' }])
      if (id === DEFAULT_ORG_ID && body.status !== undefined && body.status !== 'active') throw conflict('the default organization cannot be suspended: it holds the platform\'s administration')
      const at = new Date()
      const { after, before } = await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => {
        const before = await findOrganization(tx, id, 'update')
        if (before === undefined || before.status === 'deleted') throw notFound(`no organization ${id}`)
        const changes = {
          ...(body.name !== undefined && body.name !== before.name ? { name: body.name } : {}),
          ...(body.status !== undefined && body.status !== before.status ? { status: body.status } : {})
        }
        if (Object.keys(changes).length === 0) return { after: before, before }
        const after = await updateOrganization(tx, id, changes, at)
        const events: AuditEvent[] = []
        if (changes.name !== undefined) events.push({ type: 'organization.updated', ...actor, data: { organization_id: id, name: { from: before.name, to: after.name } } })
        if (changes.status !== undefined) events.push({ type: changes.status === 'suspended' ? 'organization.suspended' : 'organization.reactivated', ...actor, data: { organization_id: id, slug: after.slug } })
        await app.audit.recordIn(tx, ...events)
        return { after, before }
      })
      if (after.status !== before.status) {
        forget(after.slug)
        if (after.status === 'suspended') await publishChanges(app, { orgIds: [id] }, at)
      }
      return toOrganization(after)
    },

    /**
     * Deletes a suspended organization: its agents, credentials, keys and revocations are purged; its audit chain
     * is kept (append-only) and its row stays, as deleted, so its slug and issuer are never reused.
     */
    async delete (id: string, actor: AuditActor): Promise<void> {
      if (id === DEFAULT_ORG_ID) throw conflict('the default organization cannot be deleted')
      const at = new Date()
      const row = await inOrganization(app.sql, id, async (tx) => {
        // Its subscriptions before its row, as a subscription's change takes them (lockWebhookSubscriptions).
        await lockWebhookSubscriptions(tx)
        await switchOrganization(tx, DEFAULT_ORG_ID)
        const row = await findOrganization(tx, id, 'update')
        if (row === undefined || row.status === 'deleted') throw notFound(`no organization ${id}`)
        if (row.status !== 'suspended') throw conflict(`organization ${row.slug} is ${row.status}: suspend it first (PATCH status suspended), then delete it`)
        await updateOrganization(tx, id, { status: 'deleted' }, at)
        await app.audit.recordIn(tx, { type: 'organization.deleted', ...actor, data: { organization_id: id, slug: row.slug } })
        await switchOrganization(tx, id)
        await purgeOrganizationData(tx)
        return row
      })
      forget(row.slug)
      await publishChanges(app, { orgIds: [id] }, at)
    },

    /**
     * Rotates an organization's signing key: the new key is published at once and signs from `activates_in`
     * seconds on; the keys it replaces stay published until the last token they can have signed has expired.
     * The default organization signs with JWT_PRIVATE_KEY, rotated in configuration (409).
     */
    async rotateKey (orgId: string, slug: string, body: RotateKeyBody, actor: AuditActor): Promise<RotatedKey> {
      if (orgId === DEFAULT_ORG_ID) throw conflict('the default organization signs with JWT_PRIVATE_KEY: rotate it in configuration (docs/devops/security.md#rotating-the-signing-key-without-breaking-tokens)')
      const kek = requireKeyEncryptionKey()
      const current = app.keys.current.alg
      const key = await generateOrganizationKey(kek, orgId, current)
      const activatesAt = new Date(Date.now() + (body.activates_in ?? 0) * 1000)
      const retiresAt = new Date(activatesAt.getTime() + (app.config.tokenTtlSeconds + RETIREMENT_MARGIN_S) * 1000)
      const previous = await inOrganization(app.sql, orgId, async (tx) => {
        const [signing] = (await publishedKeys(tx)).filter((row) => row.activates_at <= new Date())
        await insertOrganizationKey(tx, { ...key, activates_at: activatesAt })
        await retireSigningKeys(tx, key.kid, retiresAt)
        await app.audit.recordIn(tx, { ...actor, type: 'key.rotated', data: { kid: key.kid, alg: key.alg, previous_kid: signing?.kid ?? null, activates_at: activatesAt.toISOString(), previous_retires_at: retiresAt.toISOString() } })
        return signing
      })
      forget(slug)
      return {
        kid: key.kid,
        alg: key.alg,
        activates_at: activatesAt.toISOString(),
        previous: previous === undefined ? null : { kid: previous.kid, retires_at: retiresAt.toISOString() }
      }
    }
  }
}
