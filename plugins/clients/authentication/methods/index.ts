import type { FastifyRequest } from 'fastify'
import { InvalidRequest } from '../../../../src/errors.js'
import { authorizationHeaderCount } from '../../../tokens/public.js'
import { clientSecretBasic } from './client-secret-basic.js'
import { clientSecretPost } from './client-secret-post.js'
import { privateKeyJwt } from './private-key-jwt.js'
import { UnreadableCredentials, type ClientAuthMethod, type PresentedCredentials } from './method.js'

export { UnreadableCredentials, type ClientAuthMethod, type PresentedCredentials } from './method.js'

/**
 * The client authentication methods this server supports, by their RFC 7591 names, as discovery lists them.
 * Adding one is adding a file and a line.
 */
export const CLIENT_AUTH_METHODS: Readonly<Record<string, ClientAuthMethod>> = {
  [clientSecretBasic.name]: clientSecretBasic,
  [clientSecretPost.name]: clientSecretPost,
  [privateKeyJwt.name]: privateKeyJwt
}

const METHODS = Object.values(CLIENT_AUTH_METHODS)

/**
 * Whether the request presents client credentials by any method (readable or not), or any Authorization header:
 * where client authentication is optional (the jwt-bearer grant), a request that presents them is authenticated.
 */
export function presentsClientCredentials (request: FastifyRequest): boolean {
  return authorizationHeaderCount(request) > 0 || METHODS.some((method) => method.isPresented(request))
}

/** The credentials a request presents, by exactly one method (RFC 6749 §2.3: a client uses one per request). */
export function presentedCredentials (request: FastifyRequest): PresentedCredentials {
  // Node keeps the first of repeated Authorization headers, a proxy in front may have judged another: two are two
  // credentials, which RFC 6749 §2.3 forbids in one request, as the management API refuses two Bearer tokens.
  if (authorizationHeaderCount(request) > 1) throw new InvalidRequest('the request carries more than one Authorization header')
  const presented = METHODS.filter((method) => method.isPresented(request))
  if (presented.length > 1) throw new InvalidRequest(`use one client authentication method, not both ${presented.map((method) => method.name).join(' and ')}`)
  const [method] = presented
  if (method === undefined) throw new UnreadableCredentials('no_credentials', `client authentication is required (${METHODS.map((each) => each.name).join(' or ')})`)
  return method.read(request)
}
