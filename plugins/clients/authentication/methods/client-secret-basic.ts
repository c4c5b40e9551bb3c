import { InvalidRequest, OAuthError } from '../../../../src/errors.js'
import { formOf, UnreadableCredentials, type ClientAuthMethod } from './method.js'

/** RFC 6749 §2.3.1 / Appendix B: client_id and client_secret are form-urlencoded inside the Basic credentials. */
function formDecode (value: string): string {
  return decodeURIComponent(value.replace(/\+/g, ' '))
}

const malformed = (): UnreadableCredentials => new UnreadableCredentials('malformed_credentials', 'malformed Basic credentials', 'client_secret_basic')

/** RFC 6749 §2.3.1: client_id and client_secret in an HTTP Basic Authorization header. */
export const clientSecretBasic: ClientAuthMethod = {
  name: 'client_secret_basic',
  isPresented (request) {
    const header = request.headers.authorization
    return header !== undefined && /^basic /i.test(header)
  },
  read (request) {
    const encoded = (request.headers.authorization as string).slice(6).trim()
    const bytes = Buffer.from(encoded, 'base64')
    // Node's decoder stops at the first '=' and skips what it cannot read: without this check, "Basic <valid>==x",
    // "Basic <valid>x" or two headers folded into one ("Basic <valid>, Basic <other>") authenticated as the first
    // credentials. Only the base64 of exactly those bytes (RFC 4648 §3.5), padded or not, is read.
    const canonical = bytes.toString('base64')
    if (encoded !== canonical && encoded !== canonical.replace(/=+$/, '')) throw malformed()
    const decoded = bytes.toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 1) throw malformed()
    try {
      const clientId = formDecode(decoded.slice(0, colon))
      const body = formOf(request)
      if (typeof body.client_id === 'string' && body.client_id !== clientId) throw new InvalidRequest('client_id in the body differs from the authenticated client')
      return { clientId, secret: formDecode(decoded.slice(colon + 1)), method: this.name }
    } catch (error) {
      if (error instanceof OAuthError) throw error
      throw malformed()
    }
  }
}
