import type { FastifyRequest } from 'fastify'

/** The credentials a request presents, as one method reads them. */
export interface PresentedCredentials {
  clientId: string
  /** The client secret; '' for private_key_jwt. */
  secret: string
  /** private_key_jwt only: the signed client assertion (RFC 7523 §2.2). */
  assertion?: string
  method: string
}

/** A client authentication method (RFC 7591 §2 token_endpoint_auth_method): one file each under methods/. */
export interface ClientAuthMethod {
  /** Its RFC 7591 name, as discovery lists it. */
  name: string
  /** Whether the request presents credentials by this method, readable or not. */
  isPresented(request: FastifyRequest): boolean
  /** The credentials presented: throws UnreadableCredentials when they cannot be read, an OAuthError when the request contradicts them. */
  read(request: FastifyRequest): PresentedCredentials
}

/** Client authentication that failed before any client could be named: nothing to look up, still a failure to record. */
export class UnreadableCredentials extends Error {
  constructor (readonly reason: 'no_credentials' | 'malformed_credentials', readonly description: string, readonly method?: string) {
    super(description)
  }
}

/** The form body of an OAuth request, or an empty one. */
export function formOf (request: FastifyRequest): Record<string, unknown> {
  return (request.body ?? {}) as Record<string, unknown>
}
