import { audienceOf, grantedScopes } from './agent-authority.js'
import type { Grant } from './index.js'

/**
 * RFC 6749 §4.4: the client acts on its own behalf; the token's subject is its agent, and the token dies with the
 * credential the client authenticated with.
 */
export const clientCredentials: Grant = {
  parameters: ['scope', 'resource'],
  clientAuthentication: 'required',
  async handle ({ request, body, client }) {
    // clientAuthentication 'required': the token endpoint authenticated it.
    if (client === null) throw new Error('client_credentials without an authenticated client')
    return {
      subject: client.agentId,
      scope: grantedScopes(body.scope, client.scopes),
      audience: audienceOf(body.resource, client.resources, request.issuerContext.tokenAudience),
      credentialId: client.credentialId
    }
  }
}
