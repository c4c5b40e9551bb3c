// node-oidc-provider configured as the comparison point: JWT access tokens signed with ALG (RS256, ES256 or EdDSA,
// as ours) by client_credentials with client_secret_basic, or private_key_jwt for a client given with `jwks` instead
// of a secret, from memory. Started by bench/run.ts as a child process: PORT, ALG and CLIENTS (JSON) in env. Needs
// the build (npm run bench builds first).
import { createPrivateKey } from 'node:crypto'
import { exportJWK } from 'jose'
import Provider from 'oidc-provider'
import { generateSigningKeyPair, signingKeyTypeOf } from '../dist/src/embedded.js'

const port = Number(process.env.PORT ?? 3100)
const alg = process.env.ALG ?? 'RS256'
const issuer = `http://127.0.0.1:${port}`
const clients = JSON.parse(process.env.CLIENTS ?? '[]').map(({ client_id, client_secret, jwks }) => ({
  client_id,
  ...(jwks === undefined
    ? { client_secret, token_endpoint_auth_method: 'client_secret_basic' }
    : { jwks, token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: jwks.keys[0].alg }),
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  // Its default, RS256, needs an RSA key in the keystore; the client's algorithm must be one it holds a key for.
  id_token_signed_response_alg: alg,
  scope: 'bench:read'
}))
const jwk = { ...(await exportJWK(createPrivateKey(generateSigningKeyPair(signingKeyTypeOf(alg)).privateKey))), alg, use: 'sig' }

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
        : { scope: 'bench:read', audience: 'urn:agentidp:bench', accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg } } }
    }
  }
})
provider.listen(port, () => console.log(`oidc-provider listening on ${port}`))
