// The ceiling for any server that signs each token: a bare node:http server that does nothing per request but one
// RS256 signature (RSA-2048, on libuv's thread pool like ours), with no authentication, storage or audit. Started
// by bench/run.ts beside the others: PORT in env. Its throughput bounds what signing every token allows here.
import { createServer } from 'node:http'
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const base64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url')
const header = base64url({ alg: 'RS256', typ: 'at+jwt', kid: 'ceiling' })

createServer((request, response) => {
  request.resume()
  request.on('end', () => {
    const now = Math.floor(Date.now() / 1000)
    const input = `${header}.${base64url({ iss: 'http://127.0.0.1', sub: randomUUID(), aud: 'urn:agentidp:bench', iat: now, exp: now + 900, jti: randomUUID(), scope: 'bench:read' })}`
    sign('sha256', Buffer.from(input), privateKey, (error, signature) => {
      if (error !== null) { response.writeHead(500).end(); return }
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      response.end(JSON.stringify({ access_token: `${input}.${signature.toString('base64url')}`, token_type: 'Bearer', expires_in: 900 }))
    })
  })
}).listen(Number(process.env.PORT ?? 3303), '127.0.0.1', () => console.log('signing ceiling listening'))
