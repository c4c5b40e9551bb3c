import { decodeJwt } from 'jose'
import { formOf, UnreadableCredentials, type ClientAuthMethod } from './method.js'

/** RFC 7523 §2.2: the one client_assertion_type this method reads. */
export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

const malformed = (description: string): UnreadableCredentials => new UnreadableCredentials('malformed_credentials', description, 'private_key_jwt')

/**
 * RFC 7523 §2.2 / OpenID Connect Core §9: a JWT the client signed with a key it registered, as client_assertion.
 * What names the client is the assertion's sub (read here unverified; client authentication verifies it).
 */
export const privateKeyJwt: ClientAuthMethod = {
  name: 'private_key_jwt',
  isPresented (request) {
    const body = formOf(request)
    return body.client_assertion !== undefined || body.client_assertion_type !== undefined
  },
  read (request) {
    const body = formOf(request)
    if (body.client_assertion_type !== JWT_BEARER_ASSERTION_TYPE) throw malformed(`client_assertion_type must be ${JWT_BEARER_ASSERTION_TYPE}`)
    if (typeof body.client_assertion !== 'string') throw malformed('client_assertion must be given once')
    let sub: unknown
    try {
      sub = decodeJwt(body.client_assertion).sub
    } catch {
      throw malformed('client_assertion is not a JWT')
    }
    if (typeof sub !== 'string') throw malformed('client_assertion has no sub')
    if (body.client_id !== undefined && body.client_id !== sub) throw malformed('client_id differs from the sub of client_assertion')
    return { clientId: sub, secret: '', assertion: body.client_assertion, method: this.name }
  }
}
