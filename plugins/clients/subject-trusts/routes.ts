import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminScope } from '../../../src/scopes.js'
import { problemResponses } from '../../../schemas/common.js'
import { CreateSubjectTrustBodySchema, SubjectTrustListSchema, SubjectTrustParamsSchema, SubjectTrustSchema } from '../../../schemas/subject-trusts.js'
import { principalActor } from '../../audit/public.js'
import { managementRouteConfig } from '../../infra/rate-limit.js'
import { principalCaller } from '../authorization.js'
import { subjectTrustService } from './service.js'

const security = [{ bearerAuth: [] }]
const tags = ['subject trusts']

/** /api/v1/subject-trusts: external issuers of people's tokens, and the agents that may act for those people. */
const subjectTrusts: FastifyPluginAsyncTypebox = async (app) => {
  const service = subjectTrustService(app)
  const config = managementRouteConfig(app.config)

  app.post('/api/v1/subject-trusts', {
    schema: {
      tags,
      summary: 'Trust an issuer of people\'s tokens, for the agents named',
      description: 'Scope agents:write. A token of the issuer (an ID token, an identity assertion) whose aud holds audience (default: this issuer) and whose claims match is a subject_token (subject_token_type urn:ietf:params:oauth:token-type:jwt or urn:ietf:params:oauth:token-type:id_token) that the agents in actors may exchange for a token with sub the person ({issuer}#{sub}, or a pairwise id) and act the agent, with at most their scopes here. Each actor must be a live agent of the organization the caller may act on (403 naming missing_scopes otherwise), its scopes application scopes it holds (400).',
      security,
      body: CreateSubjectTrustBodySchema,
      response: { 201: SubjectTrustSchema, ...problemResponses(400, 401, 403, 413, 415, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsWrite),
    config
  }, async (request, reply) => {
    const trust = await service.create(request.body, principalActor(request), principalCaller(request))
    return reply.code(201).header('location', `${request.issuerContext.basePath}/api/v1/subject-trusts/${trust.id}`).send(trust)
  })

  app.get('/api/v1/subject-trusts', {
    schema: {
      tags,
      summary: 'List the subject trusts',
      description: 'Scope agents:read.',
      security,
      response: { 200: SubjectTrustListSchema, ...problemResponses(401, 403, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsRead),
    config
  }, async (request) => await service.list(request.issuerContext.orgId))

  app.delete('/api/v1/subject-trusts/:id', {
    schema: {
      tags,
      summary: 'Remove a subject trust',
      description: 'Scope agents:write. No exchange for the issuer\'s subjects from then on.',
      security,
      params: SubjectTrustParamsSchema,
      response: { 204: Type.Null({ description: 'Removed' }), ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsWrite),
    config
  }, async (request, reply) => {
    await service.remove(request.params.id, principalActor(request), principalCaller(request))
    return await reply.code(204).send(null)
  })
}

export default subjectTrusts
