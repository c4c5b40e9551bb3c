// The receiver of bench/webhooks.ts, in a process of its own so that receiving costs the server's process nothing
// (a real receiver runs elsewhere): a node:http server answering 204, counting requests and noting, for each, how long
// after its event occurred it arrived. The parent asks for the count and the lags over IPC ({count} / {lags, from}).
import { createServer } from 'node:http'

let count = 0
const lagsMs = []
const server = createServer((request, response) => {
  const chunks = []
  request.on('data', (chunk) => chunks.push(chunk))
  request.on('end', () => {
    count += 1
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    lagsMs.push(Date.now() - Date.parse(body.timestamp))
    response.writeHead(204).end()
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => { process.send({ port: server.address().port }) })
process.on('message', (message) => {
  if (message === 'count') process.send({ count })
  else if (message?.lagsFrom !== undefined) process.send({ lags: lagsMs.slice(message.lagsFrom) })
})
process.on('disconnect', () => { server.closeAllConnections(); server.close() })
