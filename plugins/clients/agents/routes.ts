import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminScope } from '../../../src/scopes.js'
import {
  AgentPageSchema, AgentParamsSchema, AgentSchema, CreateAgentBodySchema, ListAgentsQuerySchema, UpdateAgentBodySchema,
  UsageQuerySchema, UsageSchema
} from '../../../schemas/agents.js'
import { problemResponses } from '../../../schemas/common.js'
import { ReviewBodySchema, ReviewSchema } from '../../../schemas/reports.js'
import { bootstrapAdmin } from '../bootstrap.js'
import { principalActor } from '../../audit/public.js'
import { managementRouteConfig } from '../../infra/rate-limit.js'
import { principalCaller } from '../authorization.js'
import { agentService } from './service.js'

const security = [{ bearerAuth: [] }]
const tags = ['agents']

/** /api/v1/agents: registration, listing, changes, suspension, decommissioning and usage of agents. */
const agents: FastifyPluginAsyncTypebox = async (app) => {
  await bootstrapAdmin(app)

  const service = agentService(app)
  const config = managementRouteConfig(app.config)
  const read = app.requireScopes(AdminScope.AgentsRead)
  const write = app.requireScopes(AdminScope.AgentsWrite)

  app.post('/api/v1/agents', {
    schema: {
      tags,
      summary: 'Register an agent',
      description: 'The agent starts active with a new client_id and no credential: create one with POST /api/v1/agents/{id}/credentials. Management scopes (agents:read, agents:write, audit:read, tokens:introspect) are granted only by a caller holding them: 403 naming those it lacks (missing_scopes). Application scopes are granted by any agents:write holder.',
      security,
      body: CreateAgentBodySchema,
      response: { 201: AgentSchema, ...problemResponses(400, 401, 403, 413, 415, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => {
    const agent = await service.create(request.body, principalActor(request), principalCaller(request), request.issuerContext.issuer)
    // Relative to the server, under the organization's path when the request was.
    return reply.code(201).header('location', `${request.issuerContext.basePath}/api/v1/agents/${agent.id}`).send(agent)
  })

  app.get('/api/v1/agents', {
    schema: {
      tags,
      summary: 'List agents',
      description: 'Creation order, keyset-paginated: follow next_cursor until it is null to see every agent exactly once, even while others are being registered.',
      security,
      querystring: ListAgentsQuerySchema,
      response: { 200: AgentPageSchema, ...problemResponses(400, 401, 403, 429, 503) }
    },
    preValidation: read,
    config
  }, async (request) => await service.list(request.issuerContext.orgId, request.query, request.issuerContext.issuer))

  app.get('/api/v1/agents/:id', {
    schema: {
      tags,
      summary: 'Get an agent',
      description: 'Decommissioned agents are still shown.',
      security,
      params: AgentParamsSchema,
      response: { 200: AgentSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: read,
    config
  }, async (request) => await service.get(request.issuerContext.orgId, request.params.id, request.issuerContext.issuer))

  app.patch('/api/v1/agents/:id', {
    schema: {
      tags,
      summary: 'Change, suspend or reactivate an agent',
      description: 'Only the members given change. status suspended refuses new tokens at once on every replica; active reactivates. A decommissioned agent is read-only: any PATCH is a 409. 403 (naming missing_scopes) when the agent holds, or the body grants, a management scope the caller does not hold. The bootstrap admin (BOOTSTRAP_CLIENT_ID) cannot be suspended or lose a management scope here: 409.',
      security,
      params: AgentParamsSchema,
      body: UpdateAgentBodySchema,
      response: { 200: AgentSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request) => await service.update(request.params.id, request.body, principalActor(request), principalCaller(request), request.issuerContext.issuer))

  app.delete('/api/v1/agents/:id', {
    schema: {
      tags,
      summary: 'Decommission an agent',
      description: 'Final: every credential is revoked in the same transaction and no new token is issued, on every replica at once. The record is kept (GET still shows it). Decommissioning a decommissioned agent is a 204 that changes nothing. 403 (naming missing_scopes) when the agent holds a management scope the caller does not; 409 for the bootstrap admin (BOOTSTRAP_CLIENT_ID), which the configuration retires.',
      security,
      params: AgentParamsSchema,
      response: { 204: Type.Null({ description: 'Decommissioned' }), ...problemResponses(400, 401, 403, 404, 409, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => {
    await service.decommission(request.params.id, principalActor(request), principalCaller(request))
    return await reply.code(204).send(null)
  })

  app.get('/api/v1/agents/:id/usage', {
    schema: {
      tags,
      summary: 'Tokens issued to an agent in a month',
      description: 'From the monthly counter the token endpoint keeps in Redis. 503 with Retry-After while Redis does not answer.',
      security,
      params: AgentParamsSchema,
      querystring: UsageQuerySchema,
      response: { 200: UsageSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: read,
    config
  }, async (request) => await service.usage(request.issuerContext.orgId, request.params.id, request.query.month))

  app.post('/api/v1/reviews', {
    schema: {
      tags: ['reports'],
      summary: 'Record an access-review decision on an agent',
      description: 'Needs reviews:write. Recorded as agent.reviewed; the access review (GET /api/v1/reports/access-review) shows each agent\'s last one. revoke suspends an active agent at once (its tokens die on every replica), under the privilege rules: 403 (naming missing_scopes) for an agent holding a management scope the caller does not, 409 for the bootstrap admin.',
      security,
      body: ReviewBodySchema,
      response: { 201: ReviewSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.ReviewsWrite),
    config
  }, async (request, reply) => reply.code(201).send(await service.review(request.body, principalActor(request), principalCaller(request))))
}

export default agents
