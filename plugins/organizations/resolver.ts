import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { inOrganization } from '../../src/database.js'
import { notFound, serviceUnavailable } from '../../src/errors.js'
import { issuerContextOf, type IssuerContext } from '../tokens/public.js'
import { findOrganizationBySlug, publishedKeys, type OrganizationRow } from './repository.js'
import { signingKeysOf } from './signing-keys.js'

const SLUG = '[a-z0-9][a-z0-9-]{1,61}[a-z0-9]'
// {ISSUER}/o/{slug}/…: an organization's endpoints. RFC 8414 §3 inserts the issuer's path after the well-known
// name instead: /.well-known/oauth-authorization-server/o/{slug}.
const ORGANIZATION_PATH = new RegExp(`^/o/(${SLUG})(/.*)?$`)
const METADATA_PATH = new RegExp(`^/\\.well-known/oauth-authorization-server/o/(${SLUG})$`)
const ORGANIZATION_SLUG = Symbol('agentidp.organizationSlug')

/**
 * Fastify's rewriteUrl: an organization's URL is routed as the same route without its prefix, and the slug is kept
 * on the request for `issuerFor`. Every route of the default issuer thereby exists under /o/{slug} too.
 */
export function rewriteOrganizationUrl (raw: IncomingMessage): string {
  const url = raw.url ?? '/'
  const queryAt = url.indexOf('?')
  const path = queryAt === -1 ? url : url.slice(0, queryAt)
  const query = queryAt === -1 ? '' : url.slice(queryAt)
  const metadata = METADATA_PATH.exec(path)
  if (metadata !== null) {
    keepSlug(raw, metadata[1] as string)
    return `/.well-known/oauth-authorization-server${query}`
  }
  const prefixed = ORGANIZATION_PATH.exec(path)
  if (prefixed === null) return url
  keepSlug(raw, prefixed[1] as string)
  return `${prefixed[2] ?? '/'}${query}`
}

function keepSlug (raw: IncomingMessage, slug: string): void {
  (raw as IncomingMessage & { [ORGANIZATION_SLUG]?: string })[ORGANIZATION_SLUG] = slug
}

function slugOf (request: FastifyRequest): string | undefined {
  return (request.raw as IncomingMessage & { [ORGANIZATION_SLUG]?: string })[ORGANIZATION_SLUG]
}

// How long a replica answers from what it read of an organization (whether it exists, and its keys) before reading it
// again in the background: a rotation made on another replica is seen within about this. Suspension does not wait for
// it: it kills tokens and refuses clients through Redis and PostgreSQL at once. Re-reading every organization more
// often cost the token endpoint most of its throughput across 1,000 organizations (docs/performance.md).
const RESOLVED_TTL_MS = 30_000
// Each entry goes stale at a point drawn from the last quarter of the TTL: organizations first asked together (a
// replica starting under traffic) are then re-read spread over seconds, not in one burst.
const RESOLVED_TTL_SPREAD_MS = RESOLVED_TTL_MS / 4
const RESOLVED_MAX_ENTRIES = 10_000

interface Resolved { context: IssuerContext | undefined, organization: OrganizationRow | undefined, staleAtMs: number }

/** Resolves `/o/{slug}` requests to their organization's issuer context, cached per slug for a few seconds. */
export function organizationResolver (app: FastifyInstance) {
  const resolved = new Map<string, Resolved>()
  const refreshing = new Set<string>()

  async function resolve (slug: string): Promise<Resolved> {
    const known = resolved.get(slug)
    if (known === undefined) return await read(slug)
    // Stale: answered as known while one read refreshes it, so no request waits on it.
    if (Date.now() >= known.staleAtMs && !refreshing.has(slug)) {
      refreshing.add(slug)
      read(slug)
        .catch((error: Error) => { app.log.warn({ slug, err: { message: error.message } }, 'could not refresh the issuer of an organization; answering from what was read before') })
        .finally(() => { refreshing.delete(slug) })
    }
    return known
  }

  async function read (slug: string): Promise<Resolved> {
    const staleAtMs = Date.now() + RESOLVED_TTL_MS - Math.random() * RESOLVED_TTL_SPREAD_MS
    const previous = resolved.get(slug)?.context
    const organization = await findOrganizationBySlug(app.sql, slug)
    let context: IssuerContext | undefined
    // The default organization has one issuer, ISSUER: /o/default is not a second name for it.
    if (organization !== undefined && organization.status !== 'deleted' && organization.slug !== 'default') {
      const kek = app.keyEncryptionKey
      if (kek === undefined) throw serviceUnavailable('organizations\' keys cannot be opened: KEY_ENCRYPTION_KEY is not set')
      const rows = await inOrganization(app.sql, organization.id, async (tx) => await publishedKeys(tx))
      const keys = signingKeysOf(kek, organization.id, rows, new Date(), previous?.orgId === organization.id ? previous.keys : undefined)
      if (keys !== undefined && previous?.keys === keys && previous.basePath === `/o/${organization.slug}`) {
        context = previous
      } else if (keys !== undefined) {
        context = issuerContextOf({ orgId: organization.id, origin: app.config.issuer, basePath: `/o/${organization.slug}`, keys, tokenAudience: `${app.config.issuer}/o/${organization.slug}` })
      }
    }
    const entry = { context, organization, staleAtMs }
    if (resolved.size >= RESOLVED_MAX_ENTRIES) resolved.clear()
    resolved.set(slug, entry)
    return entry
  }

  return {
    /** The issuer a request speaks to: the default's, or its organization's; a 404 for one that does not exist. */
    async issuerFor (request: FastifyRequest): Promise<IssuerContext> {
      const slug = slugOf(request)
      if (slug === undefined) return app.defaultIssuer
      const { context } = await resolve(slug)
      if (context === undefined) throw notFound(`no organization ${slug}`)
      return context
    },
    /** Drops what this replica cached of an organization (after this replica changed it). */
    forget (slug: string): void {
      resolved.delete(slug)
    }
  }
}
