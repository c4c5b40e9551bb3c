import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { oauthErrorResponses } from '../../schemas/common.js'
import { IntrospectionSchema, TokenParameterBodySchema } from '../../schemas/revocation.js'
import { oauthRoute } from '../tokens/public.js'
import { revocationService } from './service.js'

/** POST /oauth2/revoke (RFC 7009) and POST /oauth2/introspect (RFC 7662), client-authenticated like the token endpoint. */
const revocation: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(formbody, { bodyLimit: 32 * 1024 })
  const service = revocationService(app)

  oauthRoute(app, {
    url: '/oauth2/revoke',
    endpoint: 'revoke',
    bodyLimit: 32 * 1024,
    schema: {
      tags: ['oauth2'],
      summary: 'Revoke an access token (RFC 7009)',
      description: 'A client revokes tokens issued to itself; a client whose agent may hold agents:write also revokes the tokens of agents whose management scopes (agents:read, agents:write, audit:read, tokens:introspect) are a subset of its agent\'s. Any other valid token is refused as RFC 7009 §2.1 says for a token not issued to the client: 400 invalid_request, recorded as authz.denied. Unknown, malformed, expired or already revoked tokens answer 200 too.',
      consumes: ['application/x-www-form-urlencoded'],
      security: [{ clientSecretBasic: [] }, {}],
      body: TokenParameterBodySchema,
      response: { 200: { description: 'Revoked, or nothing to revoke: an empty body' }, ...oauthErrorResponses(400, 401, 429, 503) }
    },
    handler: async (request, reply, client) => {
      await service.revoke(request, client, request.body.token)
      return reply.send()
    }
  })

  oauthRoute(app, {
    url: '/oauth2/introspect',
    endpoint: 'introspect',
    bodyLimit: 32 * 1024,
    schema: {
      tags: ['oauth2'],
      summary: 'Introspect an access token (RFC 7662)',
      description: 'A client introspects its own tokens; a client whose agent holds tokens:introspect (a resource server) any token. Anything not currently valid is {"active": false} and nothing more.',
      consumes: ['application/x-www-form-urlencoded'],
      security: [{ clientSecretBasic: [] }, {}],
      body: TokenParameterBodySchema,
      response: { 200: IntrospectionSchema, ...oauthErrorResponses(400, 401, 429, 503) }
    },
    // Whoever the client is, the token is verified the same way: both at once, their Redis reads in one round trip.
    alongsideAuthentication: async (request) => await service.verify(request.issuerContext, request.body.token),
    handler: async (request, reply, client, verified) => reply.send(await service.introspect(request.issuerContext.orgId, client, verified))
  })
}

export default revocation

export { default as revocationState } from './state.js'
export * from './public.js'
