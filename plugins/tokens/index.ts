import formbody from '@fastify/formbody'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { UnsupportedGrantType } from '../../src/errors.js'
import { newId } from '../../src/ids.js'
import { oauthErrorResponses } from '../../schemas/common.js'
import { TokenRequestBodySchema, TokenResponseSchema, type TokenRequestBody } from '../../schemas/tokens.js'
import { dropUnreadParameters, grantOf, GRANTS, type Grant } from './grants/index.js'
import { TokenType } from './grants/token-exchange.js'
import { issueAccessToken, issueWorkloadJwt } from './issuer.js'
import { oauthRoute } from './oauth-route.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The jti of the token this request will issue, made before its client is authenticated; null until then. */
    jti: string | null
  }
}

/** The request's grant: a supported one, else unsupported_grant_type naming those this server has. */
function requestedGrant (request: FastifyRequest<{ Body: TokenRequestBody }>): Grant {
  const grantType = request.body.grant_type
  const grant = grantOf(grantType)
  if (grant === undefined) throw new UnsupportedGrantType(`grant_type ${grantType.slice(0, 100)} is not supported; supported: ${Object.keys(GRANTS).join(', ')}`)
  return grant
}

/** POST /oauth2/token (RFC 6749 §3.2; RFC 9068 access tokens), one grant per grant_type (grants/). */
const tokens: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(formbody, { bodyLimit: 16 * 1024 })
  app.decorateRequest('jti', null)

  oauthRoute(app, {
    url: '/oauth2/token',
    endpoint: 'token',
    schema: {
      tags: ['oauth2'],
      summary: `Token endpoint: ${Object.keys(GRANTS).join(', ')}`,
      description: 'Authenticate with client_secret_basic (form-urlencoded id and secret, RFC 6749 §2.3.1), client_secret_post or private_key_jwt (RFC 7523 §2.2), exactly one; with grant_type urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523 §2.1) client authentication is optional and `assertion` is an external JWT a federated credential trusts. With urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693) the client exchanges a subject_token: its own (narrowed, no act), another agent\'s under a delegation (act names the client, the earlier chain nested), or a person\'s under a subject trust; requested_token_type urn:ietf:params:oauth:token-type:jwt with an audience of the agent\'s gives a workload JWT for cloud federation; the answer carries issued_token_type. Returns an RFC 9068 JWT access token. With a DPoP header (RFC 9449 proof: typ dpop+jwt, htm POST, htu this endpoint), the token is bound to the proof\'s key: token_type DPoP and cnf.jkt; a bad proof is 400 invalid_dpop_proof, a missing or stale nonce under DPOP_NONCE=required 400 use_dpop_nonce with a DPoP-Nonce header. Errors are RFC 6749 §5.2 JSON.',
      consumes: ['application/x-www-form-urlencoded'],
      security: [{ clientSecretBasic: [] }, {}],
      body: TokenRequestBodySchema,
      response: { 200: TokenResponseSchema, ...oauthErrorResponses(400, 401, 429, 503) }
    },
    bodyLimit: 16 * 1024,
    perClientRateLimit: app.config.rateLimit.tokenPerMinute,
    clientAuthentication: (request) => requestedGrant(request).clientAuthentication,
    beforeAuthentication: [
      async function selectGrant (request) {
        dropUnreadParameters(request.body, requestedGrant(request))
      },
      // The issue time is taken before the client's standing is read: see authenticateClient.
      async function takeIssueTime (request) {
        request.jti = newId()
      },
      // RFC 9449 §5: htu is this issuer's token endpoint as the issuer context names it, never the Host header.
      async function checkDpopProof (request) {
        request.dpopProof = await app.verifyDpopProof(request, { htu: request.issuerContext.url('/oauth2/token') })
      }
    ],
    handler: async (request, reply) => {
      const grantType = request.body.grant_type
      const issuance = await requestedGrant(request).handle({ app, request, body: request.body, client: request.client, jti: request.jti as string })
      const client = request.client ?? issuance.client
      // A grant with optional client authentication names the client when the request authenticated none.
      if (client === undefined) throw new Error(`grant ${grantType} established no client`)
      const nextNonce = request.dpopProof?.nextNonce
      if (nextNonce !== undefined) reply.header('dpop-nonce', nextNonce)
      const issue = issuance.issuedTokenType === TokenType.Jwt ? issueWorkloadJwt : issueAccessToken
      return reply.send(await issue(app, request, { grantType, client, jti: request.jti as string, issuance }))
    }
  })
}

export default tokens

export { default as bearerAuthentication } from './bearer.js'
export { default as dpopProofs } from './dpop.js'
export { default as issuerContext } from './issuer-context.js'
export * from './public.js'
