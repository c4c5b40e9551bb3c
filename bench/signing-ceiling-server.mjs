// The ceiling for any server that signs each token: a bare node:http server that does nothing per request but one
// signature with ALG (RS256, ES256 or EdDSA), made by our own signJwt (on libuv's thread pool), with no
// authentication, storage or audit. Started by bench/run.ts beside the others: PORT and ALG in env; needs the build.
// Its throughput bounds what signing every token allows here.
import { createServer } from 'node:http'
import { createPrivateKey, randomUUID } from 'node:crypto'
import { signJwt, signingInput } from '../dist/plugins/tokens/issuer.js'
import { generateSigningKeyPair, signingKeyTypeOf } from '../dist/src/embedded.js'

const alg = process.env.ALG ?? 'RS256'
const key = { alg, privateKey: createPrivateKey(generateSigningKeyPair(signingKeyTypeOf(alg)).privateKey) }

createServer((request, response) => {
  request.resume()
  request.on('end', () => {
    const now = Math.floor(Date.now() / 1000)
    signJwt(signingInput({ alg, typ: 'at+jwt', kid: 'ceiling' }, { iss: 'http://127.0.0.1', sub: randomUUID(), aud: 'urn:agentidp:bench', iat: now, exp: now + 900, jti: randomUUID(), scope: 'bench:read' }, key.privateKey), key).then((token) => {
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      response.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 900 }))
    }, () => { response.writeHead(500).end() })
  })
}).listen(Number(process.env.PORT ?? 3303), '127.0.0.1', () => console.log('signing ceiling listening'))
