import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import type { SigningKeys } from '../infra/keys.js'

/**
 * Who is speaking for a request: the issuer identifier, the keys it signs with and publishes, and the audience of
 * its tokens. Everything that reads one of them at request time (token signing, Bearer verification, introspection,
 * discovery, JWKS) reads it from here, so an organization's issuer (`{ISSUER}/o/{slug}`, its own keys) is a
 * different context, not a change in every file.
 */
export interface IssuerContext {
  /** The organization this issuer belongs to (DEFAULT_ORG_ID for ISSUER itself): what inOrganization scopes to. */
  readonly orgId: string
  /** The issuer identifier: iss of every token, issuer of discovery, the audience of management API tokens. */
  readonly issuer: string
  /** The keys this issuer signs with (current) and verifies against (byKid), published at its JWKS. */
  readonly keys: SigningKeys
  /** The aud of a token whose request names no resource (TOKEN_AUDIENCE, by default the issuer). */
  readonly tokenAudience: string
  /** Path prefix of this issuer's endpoints on this server, '' for the default. */
  readonly basePath: string
  /** The absolute URL of one of this issuer's endpoints: `url('/oauth2/token')`. */
  url(path: string): string
}

/**
 * An issuer context: `origin` is ISSUER, `basePath` where this issuer's endpoints sit under it ('' for the
 * default), so the identifier is `origin + basePath`. Frozen: a context is shared by every request it serves.
 */
export function issuerContextOf (parts: { orgId: string, origin: string, basePath: string, keys: SigningKeys, tokenAudience: string }): IssuerContext {
  const issuer = `${parts.origin}${parts.basePath}`
  return Object.freeze({ orgId: parts.orgId, issuer, keys: parts.keys, tokenAudience: parts.tokenAudience, basePath: parts.basePath, url: (path: string) => `${issuer}${path}` })
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The issuer of ISSUER and the configured keys: what start-up code (no request) speaks for. */
    defaultIssuer: IssuerContext
    /**
     * Resolves the issuer a request speaks to; run once per request (onRequest) into `request.issuerContext`.
     * The one seam for organizations: today every request gets the default issuer.
     */
    issuerFor(request: FastifyRequest): Promise<IssuerContext>
  }
  interface FastifyRequest {
    /** The issuer this request speaks to, resolved when it arrived (see `app.issuerFor`). */
    issuerContext: IssuerContext
  }
}

/**
 * Builds the default issuer context once from ISSUER, the loaded keys and TOKEN_AUDIENCE, and resolves each
 * request's. Organizations will resolve here by the `/o/{slug}` prefix (the lookup is why it is async).
 */
export default fp(async (app) => {
  const { config, keys } = app
  const defaultIssuer = issuerContextOf({ orgId: DEFAULT_ORG_ID, origin: config.issuer, basePath: '', keys, tokenAudience: config.tokenAudience })
  app.decorate('defaultIssuer', defaultIssuer)
  app.decorate('issuerFor', async (_request: FastifyRequest) => defaultIssuer)
  app.decorateRequest('issuerContext', null as unknown as IssuerContext)
  app.addHook('onRequest', async (request) => {
    // app.issuerFor is looked up on each request, not captured here: replacing that one function (organizations,
    // a test) changes which issuer every request speaks to.
    request.issuerContext = await app.issuerFor(request)
  })
}, { name: 'issuer-context', dependencies: ['config', 'keys'] })
