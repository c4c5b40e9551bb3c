// A resource server that accepts AgentIdP access tokens: it finds the JWKS through discovery and verifies each
// token locally (signature by a published key, typ at+jwt, issuer, audience, expiry), then checks the route's scope.
// Run it beside AgentIdP:  node examples/resource-server/server.mjs
//   ISSUER    AgentIdP's ISSUER, exactly as it is set there (default http://localhost:3000)
//   PORT      where this server listens (default 4000)
//   AUDIENCE  the aud tokens must carry: ask for them with resource=<AUDIENCE> (default http://localhost:PORT)
import { createServer } from 'node:http'
import { createRemoteJWKSet, errors, jwtVerify } from 'jose'

const issuer = process.env.ISSUER ?? 'http://localhost:3000'
const port = Number(process.env.PORT ?? 4000)
const audience = process.env.AUDIENCE ?? `http://localhost:${port}`

// Discovery once, on first use (so this server may start before AgentIdP); a failure is retried on the next call.
let jwks
async function keys () {
  jwks ??= fetch(new URL('/.well-known/openid-configuration', issuer)).then(async (response) => {
    if (!response.ok) throw new Error(`discovery answered ${response.status}`)
    const metadata = await response.json()
    if (metadata.issuer !== issuer) throw new Error(`discovery names the issuer ${metadata.issuer}, expected ${issuer}`)
    return createRemoteJWKSet(new URL(metadata.jwks_uri))
  }).catch((error) => { jwks = undefined; throw error })
  return await jwks
}

/** The verified claims of the request's Bearer token, or an answer saying why not (RFC 6750 §3). */
async function authenticate (request, scope) {
  const match = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(request.headers.authorization ?? '')
  if (match === null) return { status: 401, challenge: 'Bearer realm="example"', body: { error: 'a Bearer access token is required' } }
  try {
    // The asymmetric algorithms AgentIdP signs with (RSA, EC P-256 or Ed25519 keys); never HS256 or none.
    const { payload } = await jwtVerify(match[1], await keys(), { issuer, audience, typ: 'at+jwt', algorithms: ['RS256', 'ES256', 'EdDSA'] })
    if (!String(payload.scope ?? '').split(' ').includes(scope)) {
      return { status: 403, challenge: `Bearer error="insufficient_scope", scope="${scope}"`, body: { error: `the token lacks the scope ${scope}` } }
    }
    return { claims: payload }
  } catch (error) {
    if (!(error instanceof errors.JOSEError)) throw error
    return { status: 401, challenge: 'Bearer error="invalid_token"', body: { error: `invalid token: ${error.message}` } }
  }
}

const server = createServer((request, response) => {
  const send = (status, body, headers = {}) => {
    response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
  }
  if (request.method !== 'GET' || request.url !== '/forecast') return send(404, { error: 'try GET /forecast' })
  authenticate(request, 'weather:read').then((result) => {
    if (result.claims === undefined) return send(result.status, result.body, { 'www-authenticate': result.challenge })
    send(200, { forecast: 'sunny', for_agent: result.claims.sub, client_id: result.claims.client_id })
  }, (error) => send(503, { error: `cannot verify tokens now: ${error.message}` }))
})

server.listen(port, '127.0.0.1', () => {
  console.log(`resource server listening on http://127.0.0.1:${server.address().port} (issuer ${issuer}, audience ${audience})`)
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
