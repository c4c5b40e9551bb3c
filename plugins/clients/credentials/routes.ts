import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AdminScope } from '../../../src/scopes.js'
import { AgentParamsSchema } from '../../../schemas/agents.js'
import { problemResponses } from '../../../schemas/common.js'
import { CreateCredentialBodySchema, CredentialListSchema, CredentialParamsSchema, IssuedCredentialSchema } from '../../../schemas/credentials.js'
import { principalActor } from '../../audit/public.js'
import { managementRouteConfig } from '../../infra/rate-limit.js'
import { principalCaller } from '../authorization.js'
import { credentialService } from './service.js'

const security = [{ bearerAuth: [] }]
const tags = ['credentials']

/** /api/v1/agents/{id}/credentials: issue, list and revoke an agent's client secrets. */
const credentials: FastifyPluginAsyncTypebox = async (app) => {
  const service = credentialService(app)
  const config = managementRouteConfig(app.config)

  app.post('/api/v1/agents/:id/credentials', {
    schema: {
      tags,
      summary: 'Issue a client secret, register a public key or a federation trust',
      description: 'No body, or type client_secret: a secret, in this response only; AgentIdP stores its argon2id hash. An agent may hold several live credentials, so a secret rotates without downtime: issue the new one, switch the client, revoke the old one. type private_key_jwt with jwk: a public key its client assertions are signed with. type federated with issuer and subject (audience, claims, jwks or jwks_uri optional): tokens of that external issuer, presented with grant_type urn:ietf:params:oauth:grant-type:jwt-bearer, stand for the agent; 409 when a live federated credential of the organization has the same issuer, subject and claims. 403 (naming missing_scopes) when the agent holds a management scope the caller does not; 409 for the bootstrap admin (BOOTSTRAP_CLIENT_ID), whose secret is BOOTSTRAP_CLIENT_SECRET.',
      security,
      params: AgentParamsSchema,
      body: CreateCredentialBodySchema,
      response: { 201: IssuedCredentialSchema, ...problemResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) }
    },
    // Authentication first; then no body at all means no options: validated as {}.
    preValidation: [app.requireScopes(AdminScope.AgentsWrite), async (request) => { request.body ??= {} }],
    config
  }, async (request, reply) => {
    const credential = await service.create(request.params.id, request.body, principalActor(request), principalCaller(request))
    return reply.code(201)
      .header('location', `${request.issuerContext.basePath}/api/v1/agents/${request.params.id}/credentials/${credential.id}`)
      .send(credential)
  })

  app.get('/api/v1/agents/:id/credentials', {
    schema: {
      tags,
      summary: "List an agent's credentials",
      description: 'Live, expired and revoked, oldest first. Never a secret or a hash.',
      security,
      params: AgentParamsSchema,
      response: { 200: CredentialListSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsRead),
    config
  }, async (request) => await service.list(request.issuerContext.orgId, request.params.id))

  app.delete('/api/v1/agents/:id/credentials/:credential_id', {
    schema: {
      tags,
      summary: 'Revoke a credential',
      description: 'The secret stops working at once, on every replica. Revoking a revoked credential is a 204 that changes nothing. 403 (naming missing_scopes) when the agent holds a management scope the caller does not; 409 for the bootstrap admin\'s BOOTSTRAP_CLIENT_SECRET credential.',
      security,
      params: CredentialParamsSchema,
      response: { 204: Type.Null({ description: 'Revoked' }), ...problemResponses(400, 401, 403, 404, 409, 429, 503) }
    },
    preValidation: app.requireScopes(AdminScope.AgentsWrite),
    config
  }, async (request, reply) => {
    await service.revoke(request.params.id, request.params.credential_id, principalActor(request), principalCaller(request))
    return await reply.code(204).send(null)
  })
}

export default credentials
