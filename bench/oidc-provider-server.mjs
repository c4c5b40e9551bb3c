// node-oidc-provider configured as the comparison point: RS256 JWT access tokens by client_credentials with
// client_secret_basic, from memory. Started by bench/run.ts as a child process: PORT and CLIENTS (JSON) in env.
import { generateKeyPairSync } from 'node:crypto'
import { exportJWK } from 'jose'
import Provider from 'oidc-provider'

const port = Number(process.env.PORT ?? 3100)
const issuer = `http://127.0.0.1:${port}`
const clients = JSON.parse(process.env.CLIENTS ?? '[]').map(({ client_id, client_secret }) => ({
  client_id,
  client_secret,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'bench:read'
}))
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig' }

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  scopes: ['bench:read'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:agentidp:bench',
      useGrantedResource: () => true,
      // node-oidc-provider introspects only the tokens it stores (opaque); the introspection row asks for those.
      getResourceServerInfo: (_ctx, resource) => resource === 'urn:agentidp:opaque'
        ? { scope: 'bench:read', audience: resource, accessTokenFormat: 'opaque', accessTokenTTL: 3600 }
        : { scope: 'bench:read', audience: 'urn:agentidp:bench', accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg: 'RS256' } } }
    }
  }
})
provider.listen(port, () => console.log(`oidc-provider listening on ${port}`))
