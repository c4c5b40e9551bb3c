import { InvalidGrant, InvalidRequest } from '../../../src/errors.js'
import { audienceOf, grantedScopes } from './agent-authority.js'
import type { Grant } from './index.js'
import type { FederatedIdentity } from '../../clients/public.js'

/** The agent part of a federated identity, without the external token's claims. */
function asClient ({ issuer: _issuer, subject: _subject, claims: _claims, ...agent }: FederatedIdentity): Omit<FederatedIdentity, 'issuer' | 'subject' | 'claims'> {
  return agent
}

/** RFC 7523 §2.1: the grant_type of an external JWT presented as the authorization grant. */
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

/**
 * RFC 7523 §2.1 (workload identity federation): a token of an external issuer (a Kubernetes service account, a
 * GitHub Actions job, a SPIFFE JWT-SVID, another AgentIdP) stands for the agent of the one federated credential it
 * matches (`app.verifyFederatedAssertion`). Client authentication is optional (§3.1); a client that does
 * authenticate must be that agent's. Scopes and resources are the agent's, as for client_credentials, and the token
 * dies with the federated credential.
 */
export const jwtBearer: Grant = {
  parameters: ['assertion', 'scope', 'resource'],
  clientAuthentication: 'optional',
  async handle ({ app, request, body, client }) {
    const assertion = body.assertion
    if (typeof assertion !== 'string') throw new InvalidRequest('assertion is required, once: the external JWT')
    const identity = await app.verifyFederatedAssertion(request, assertion)
    if (client !== null && client.agentId !== identity.agentId) throw new InvalidGrant('the assertion stands for another agent than the authenticated client')
    return {
      subject: identity.agentId,
      scope: grantedScopes(body.scope, identity.scopes),
      audience: audienceOf(body.resource, identity.resources, request.issuerContext.tokenAudience),
      credentialId: identity.credentialId,
      // No client authenticated: the agent of the federated credential is the client, by no method of its own.
      client: client ?? { ...asClient(identity), method: 'none' },
      // The external identity the token was issued for, and the trust that matched, in token.issued.
      audit: { federated: { iss: identity.issuer, sub: identity.subject, credential_id: identity.credentialId } }
    }
  }
}
