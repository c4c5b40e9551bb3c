import { InvalidRequest } from '../../../../src/errors.js'
import { formOf, type ClientAuthMethod } from './method.js'

/** RFC 6749 §2.3.1: client_id and client_secret as form parameters of the request body. */
export const clientSecretPost: ClientAuthMethod = {
  name: 'client_secret_post',
  isPresented (request) {
    return formOf(request).client_secret !== undefined
  },
  read (request) {
    const body = formOf(request)
    if (typeof body.client_id !== 'string' || typeof body.client_secret !== 'string') throw new InvalidRequest('client_id and client_secret must each be given once')
    return { clientId: body.client_id, secret: body.client_secret, method: this.name }
  }
}
