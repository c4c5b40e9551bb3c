import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminScope } from '../../../src/scopes.js'
import { AgentParamsSchema } from '../../../schemas/agents.js'
import { problemResponses } from '../../../schemas/common.js'
import { CreateDelegationBodySchema, DelegationListSchema, DelegationParamsSchema, DelegationSchema } from '../../../schemas/delegations.js'
import { principalActor } from '../../audit/public.js'
import { managementRouteConfig } from '../../infra/rate-limit.js'
import { principalCaller } from '../authorization.js'
import { delegationService } from './service.js'

const security = [{ bearerAuth: [] }]
const tags = ['delegations']

/** /api/v1/agents/{id}/delegations: who may act for an agent through token exchange (RFC 8693), with which scopes. */
const delegations: FastifyPluginAsyncTypebox = async (app) => {
  const service = delegationService(app)
  const config = managementRouteConfig(app.config)

  app.post('/api/v1/agents/:id/delegations', {
    schema: {
      tags,
      summary: 'Let another agent act for this one',
      description: 'The actor may then exchange a token of this agent (subject_token) for one with sub this agent and act the actor (grant_type urn:ietf:params:oauth:grant-type:token-exchange), with at most these scopes. Scope agents:write; 403 (naming missing_scopes) when the agent holds a management scope the caller does not, or the delegation names one; 400 when the agent does not hold a scope named (nobody delegates what it does not hold) or the actor is no live agent of the organization; 409 when the actor already holds a delegation of this agent.',
      security,
      params: AgentParamsSchema,
      body: CreateDelegationBodySchema,
      response: { 201: DelegationSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsWrite),
    config
  }, async (request, reply) => {
    const delegation = await service.create(request.params.id, request.body, principalActor(request), principalCaller(request))
    return reply.code(201)
      .header('location', `${request.issuerContext.basePath}/api/v1/agents/${request.params.id}/delegations/${delegation.id}`)
      .send(delegation)
  })

  app.get('/api/v1/agents/:id/delegations', {
    schema: {
      tags,
      summary: "List an agent's delegations",
      description: 'Scope agents:read. Expired ones too (an exchange ignores them), oldest first.',
      security,
      params: AgentParamsSchema,
      response: { 200: DelegationListSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsRead),
    config
  }, async (request) => await service.list(request.issuerContext.orgId, request.params.id))

  app.delete('/api/v1/agents/:id/delegations/:delegation_id', {
    schema: {
      tags,
      summary: 'Remove a delegation',
      description: 'Scope agents:write. The actor gets no new token for this agent from then on; tokens already exchanged live until they expire (at most the subject token\'s lifetime) unless revoked. 403 (naming missing_scopes) when the agent holds a management scope the caller does not.',
      security,
      params: DelegationParamsSchema,
      response: { 204: Type.Null({ description: 'Removed' }), ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsWrite),
    config
  }, async (request, reply) => {
    await service.remove(request.params.id, request.params.delegation_id, principalActor(request), principalCaller(request))
    return await reply.code(204).send(null)
  })
}

export default delegations
