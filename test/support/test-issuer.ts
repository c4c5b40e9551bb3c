import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTHeaderParameters } from 'jose'

/**
 * An external token issuer for federation tests: a real HTTP server serving its OIDC discovery and JWK Set, and the
 * private key its tokens are signed with (a Kubernetes API server, GitHub's token service, a SPIRE server).
 */
export interface TestIssuer {
  /** http://127.0.0.1:{port} (FEDERATION_ALLOW_PRIVATE_NETWORKS=true lets AgentIdP fetch from it). */
  url: string
  jwksUri: string
  kid: string
  privateKey: CryptoKey
  publicJwk: JWK
  /** Requests received, by path. */
  requests: string[]
  /** Signs a token with the issuer's key (or `options.key`), iss its URL unless claims say otherwise. */
  sign(claims: Record<string, unknown>, options?: { header?: Partial<JWTHeaderParameters>, key?: CryptoKey, lifetimeS?: number }): Promise<string>
  close(): Promise<void>
}

/** Starts an issuer whose keys are of `alg` (RS256 like Kubernetes and GitHub, or ES256). */
export async function startTestIssuer (alg: 'RS256' | 'ES256' = 'RS256'): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const kid = randomUUID()
  const publicJwk = { ...await exportJWK(publicKey), kid, alg, use: 'sig' }
  const requests: string[] = []
  let url = ''
  const server: Server = createServer((request, response) => {
    requests.push(request.url ?? '')
    if (request.url === '/.well-known/openid-configuration') {
      response.setHeader('content-type', 'application/json')
      response.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/keys`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: [alg] }))
    } else if (request.url === '/keys') {
      response.setHeader('content-type', 'application/jwk-set+json')
      response.end(JSON.stringify({ keys: [publicJwk] }))
    } else {
      response.statusCode = 404
      response.end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    jwksUri: `${url}/keys`,
    kid,
    privateKey,
    publicJwk,
    requests,
    async sign (claims, options = {}) {
      const now = Math.floor(Date.now() / 1000)
      return await new SignJWT({ iss: url, iat: now, exp: now + (options.lifetimeS ?? 600), jti: randomUUID(), ...claims })
        .setProtectedHeader({ alg, kid, typ: 'JWT', ...options.header })
        .sign(options.key ?? privateKey)
    },
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
