import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import { DiscoverySchema, JwksSchema } from '../../schemas/oidc.js'
import { ADMIN_SCOPES } from '../../src/scopes.js'
import { CLIENT_AUTH_METHODS } from '../clients/authentication/methods/index.js'
import { GRANTS } from '../tokens/grants/index.js'

type Discovery = Static<typeof DiscoverySchema>

// Clients and resource servers fetch these often; a few minutes of caching is safe for keys that rotate with
// a published overlap (JWT_PREVIOUS_PUBLIC_KEYS).
const CACHE_CONTROL = 'public, max-age=300'

/** OIDC Discovery / RFC 8414 metadata and the RFC 7517 JWK Set. */
const oidc: FastifyPluginAsyncTypebox = async (app) => {
  const { config, keys } = app
  let metadata: Discovery | undefined

  /** Built from the routes that exist, once they all do: it can never advertise an endpoint that is not there. */
  function discovery (): Discovery {
    if (metadata !== undefined) return metadata
    const endpoint = (path: string): string | undefined => (app.hasRoute({ method: 'POST', url: path }) ? `${config.issuer}${path}` : undefined)
    const revocation = endpoint('/oauth2/revoke')
    const introspection = endpoint('/oauth2/introspect')
    metadata = {
      issuer: config.issuer,
      token_endpoint: `${config.issuer}/oauth2/token`,
      jwks_uri: `${config.issuer}/.well-known/jwks.json`,
      ...(revocation === undefined ? {} : { revocation_endpoint: revocation, revocation_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS) }),
      ...(introspection === undefined ? {} : { introspection_endpoint: introspection, introspection_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS) }),
      grant_types_supported: Object.keys(GRANTS),
      token_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS),
      scopes_supported: ADMIN_SCOPES,
      // No authorization endpoint and no ID tokens: agents use client_credentials. OIDC Discovery requires these
      // members; an empty list says honestly that no response type is served.
      response_types_supported: [],
      subject_types_supported: ['public'],
      // The algorithms of the published keys: what a token of this server may be signed with right now.
      id_token_signing_alg_values_supported: keys.algorithms,
      service_documentation: `${config.issuer}/docs`
    }
    return metadata
  }

  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    app.get(path, {
      schema: { tags: ['discovery'], summary: path.endsWith('openid-configuration') ? 'OpenID Connect Discovery 1.0' : 'RFC 8414 authorization server metadata', response: { 200: DiscoverySchema } }
    }, async (_request, reply) => reply.header('cache-control', CACHE_CONTROL).send(discovery()))
  }

  app.get('/.well-known/jwks.json', {
    schema: { tags: ['discovery'], summary: 'RFC 7517 JWK Set: the current signing key and previous keys still in use', response: { 200: JwksSchema } }
  }, async (_request, reply) => reply.header('cache-control', CACHE_CONTROL).send(keys.jwks))
}

export default oidc
