import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import { DiscoverySchema, JwksSchema } from '../../schemas/oidc.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { ADMIN_SCOPES, ORGANIZATION_ADMIN_SCOPES } from '../../src/scopes.js'
import { ASSERTION_ALGORITHMS, CLIENT_AUTH_METHODS } from '../clients/public.js'
import { DPOP_ALGORITHMS, GRANTS, type IssuerContext } from '../tokens/public.js'
import dids from './dids.js'

type Discovery = Static<typeof DiscoverySchema>

// Clients and resource servers fetch these often; a few minutes of caching is safe for keys that rotate with
// a published overlap (JWT_PREVIOUS_PUBLIC_KEYS).
const CACHE_CONTROL = 'public, max-age=300'

/** OIDC Discovery / RFC 8414 metadata, the RFC 7517 JWK Set and the did:web documents of the issuer and its agents. */
const oidc: FastifyPluginAsyncTypebox = async (app) => {
  // Per issuer context: a context is built once and shared by its requests, and one with other keys is another
  // context, so its metadata is built afresh.
  const built = new WeakMap<IssuerContext, Discovery>()

  /**
   * Built from the routes that exist, once they all do: it can never advertise an endpoint that is not there.
   * Every issuer serves the same endpoints, so the routes are looked up without its base path.
   */
  function discovery (context: IssuerContext): Discovery {
    const known = built.get(context)
    if (known !== undefined) return known
    const { keys, url } = context
    const endpoint = (path: string): string | undefined => (app.hasRoute({ method: 'POST', url: path }) ? url(path) : undefined)
    const revocation = endpoint('/oauth2/revoke')
    const introspection = endpoint('/oauth2/introspect')
    const metadata: Discovery = {
      issuer: context.issuer,
      token_endpoint: url('/oauth2/token'),
      jwks_uri: url('/.well-known/jwks.json'),
      ...(revocation === undefined ? {} : { revocation_endpoint: revocation, revocation_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS) }),
      ...(introspection === undefined ? {} : { introspection_endpoint: introspection, introspection_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS) }),
      grant_types_supported: Object.keys(GRANTS),
      token_endpoint_auth_methods_supported: Object.keys(CLIENT_AUTH_METHODS),
      // What a private_key_jwt client assertion may be signed with: asymmetric only.
      token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGORITHMS],
      // RFC 9449 §5.1: what a DPoP proof may be signed with, at the token endpoint and the management API alike.
      dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
      // An organization other than the default holds no platform scope: it does not advertise one.
      scopes_supported: context.orgId === DEFAULT_ORG_ID ? ADMIN_SCOPES : ORGANIZATION_ADMIN_SCOPES,
      // No authorization endpoint and no ID tokens: agents use client_credentials. OIDC Discovery requires these
      // members; an empty list says honestly that no response type is served.
      response_types_supported: [],
      subject_types_supported: ['public'],
      // The algorithms of the published keys: what a token of this server may be signed with right now.
      id_token_signing_alg_values_supported: keys.algorithms,
      service_documentation: url('/docs')
    }
    built.set(context, metadata)
    return metadata
  }

  for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    app.get(path, {
      schema: { tags: ['discovery'], summary: path.endsWith('openid-configuration') ? 'OpenID Connect Discovery 1.0' : 'RFC 8414 authorization server metadata', response: { 200: DiscoverySchema } }
    }, async (request, reply) => reply.header('cache-control', CACHE_CONTROL).send(discovery(request.issuerContext)))
  }

  app.get('/.well-known/jwks.json', {
    schema: { tags: ['discovery'], summary: 'RFC 7517 JWK Set: the current signing key and previous keys still in use', response: { 200: JwksSchema } }
  }, async (request, reply) => reply.header('cache-control', CACHE_CONTROL).send(request.issuerContext.keys.jwks))

  await app.register(dids)
}

export default oidc
