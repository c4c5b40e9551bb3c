import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { Type } from 'typebox'
import { problemResponses } from '../../schemas/common.js'
import {
  CreatedOrganizationSchema, CreateOrganizationBodySchema, ListOrganizationsQuerySchema, OrganizationPageSchema, OrganizationParamsSchema,
  OrganizationSchema, RotatedKeySchema, RotateKeyBodySchema, UpdateOrganizationBodySchema
} from '../../schemas/organizations.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { notFound } from '../../src/errors.js'
import { AdminScope } from '../../src/scopes.js'
import { principalActor } from '../audit/public.js'
import { managementRouteConfig } from '../infra/rate-limit.js'
import { organizationResolver } from './resolver.js'
import { organizationService } from './service.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Drops what this replica cached of an organization's issuer (its keys, its status) after changing it. */
    forgetOrganization(slug: string): void
  }
}

/**
 * Organizations' issuers, on the root: `/o/{slug}/…` requests resolve to their organization's issuer context
 * (its issuer, keys, audience), replacing the default-only app.issuerFor of the issuer-context plugin.
 */
export const organizationIssuers = fp(async (app) => {
  const resolver = organizationResolver(app)
  app.issuerFor = resolver.issuerFor
  app.decorate('forgetOrganization', resolver.forget)
}, { name: 'organization-issuers', dependencies: ['issuer-context', 'postgres', 'keys'] })

const security = [{ bearerAuth: [] }]
const tags = ['organizations']

/** Platform administration exists in the default organization only: elsewhere these routes are not there. */
async function platformOnly (request: FastifyRequest): Promise<void> {
  if (request.issuerContext.orgId !== DEFAULT_ORG_ID) throw notFound(`Route ${request.method}:${request.url} not found`)
}

/** /api/v1/organizations (platform scopes, default organization) and /api/v1/keys/rotate (an organization's own). */
const organizations: FastifyPluginAsyncTypebox = async (app) => {
  const service = organizationService(app, (slug) => { app.forgetOrganization(slug) })
  const config = managementRouteConfig(app.config)
  const read = [platformOnly, app.requireScopes(AdminScope.OrganizationsRead)]
  const write = [platformOnly, app.requireScopes(AdminScope.OrganizationsWrite)]

  app.post('/api/v1/organizations', {
    schema: {
      tags,
      summary: 'Create an organization',
      description: 'A tenant with its own issuer ({ISSUER}/o/{slug}), signing key, agents and audit chain. The response holds its first admin agent\'s client secret, shown this once; that admin holds every admin scope but the platform\'s (organizations:*, metrics:read). Needs organizations:write, which exists in the default organization only. 409 for a slug taken, or without KEY_ENCRYPTION_KEY.',
      security,
      body: CreateOrganizationBodySchema,
      response: { 201: CreatedOrganizationSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => {
    const created = await service.create(request.body, principalActor(request))
    return reply.code(201).header('location', `/api/v1/organizations/${created.id}`).send(created)
  })

  app.get('/api/v1/organizations', {
    schema: {
      tags,
      summary: 'List organizations',
      description: 'Creation order, keyset-paginated (follow next_cursor), the default organization first; deleted ones are listed as deleted.',
      security,
      querystring: ListOrganizationsQuerySchema,
      response: { 200: OrganizationPageSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: read,
    config
  }, async (request) => await service.list(request.query))

  app.get('/api/v1/organizations/:id', {
    schema: { tags, summary: 'Get an organization', security, params: OrganizationParamsSchema, response: { 200: OrganizationSchema, ...problemResponses(400, 401, 403, 404, 429, 503) } },
    preValidation: read,
    config
  }, async (request) => await service.get(request.params.id))

  app.patch('/api/v1/organizations/:id', {
    schema: {
      tags,
      summary: 'Rename, suspend or reactivate an organization',
      description: 'status suspended refuses its clients and makes every token its issuer issued inactive, on every replica at once; active reactivates (earlier tokens stay dead). The default organization cannot be suspended (409).',
      security,
      params: OrganizationParamsSchema,
      body: UpdateOrganizationBodySchema,
      response: { 200: OrganizationSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request) => await service.update(request.params.id, request.body, principalActor(request)))

  app.delete('/api/v1/organizations/:id', {
    schema: {
      tags,
      summary: 'Delete a suspended organization',
      description: 'Suspend it first (409 otherwise). Its agents, credentials, keys and revocations are purged at once; its audit chain is kept (append-only, still verifiable with npm run audit:verify -- --org <slug>), and its slug is never reused.',
      security,
      params: OrganizationParamsSchema,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 403, 404, 409, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => {
    await service.delete(request.params.id, principalActor(request))
    return await reply.code(204).send(null)
  })

  app.post('/api/v1/keys/rotate', {
    schema: {
      tags,
      summary: 'Rotate this organization\'s signing key',
      description: 'At /o/{slug}/api/v1/keys/rotate, with keys:write. The new key is in the JWKS at once and signs from activates_in seconds on (default 0); the key it replaces stays published until its last token has expired. Recorded as key.rotated. The default organization signs with JWT_PRIVATE_KEY, rotated in configuration: 409.',
      security,
      body: RotateKeyBodySchema,
      response: { 200: RotatedKeySchema, ...problemResponses(400, 401, 403, 409, 413, 415, 429, 503) }
    },
    // Authentication first; then no body at all means no options: validated as {}.
    preValidation: [app.requireScopes(AdminScope.KeysWrite), async (request) => { request.body ??= {} }],
    config
  }, async (request) => {
    const { orgId, basePath } = request.issuerContext
    return await service.rotateKey(orgId, basePath.slice('/o/'.length), request.body, principalActor(request))
  })
}

export default organizations
export { rewriteOrganizationUrl } from './resolver.js'
