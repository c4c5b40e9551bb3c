#!/usr/bin/env node
// Repairs a defect of the postgres driver (postgres.js 3.4.9, unfixed upstream: porsager/postgres#1154, #1208,
// PRs #1168, #1209) that AgentIdP's fault tests hit whenever PostgreSQL drops connections under load:
//
// Small writes are deferred behind a setImmediate, armed only while `nextWriteTimer` is null. When the socket
// closes, closed()/terminate() cancel the immediate but leave `nextWriteTimer` set and the half-written `chunk`
// buffered. Then either
//   - the deferred nextWrite runs after closed() nulled the socket: an uncaught TypeError that kills the process;
//   - or the connection reconnects and its StartupMessage is buffered behind the stale timer and never sent: every
//     later query on it waits for connect_timeout, for ever (the service never comes back by itself).
//
// The repair: teardown forgets the timer and the buffered bytes of the dead socket, and a deferred write that finds
// no socket rejects what was waiting (CONNECTION_CLOSED, a catchable error) instead of throwing.
//
// And a second defect of the same driver: when the server (or a proxy or load balancer in front of it) accepts the
// TCP connection and closes it before the startup completes, closed() reconnects for the waiting query and each
// attempt restarts connect_timeout, so the query waits, retrying, for as long as the server is away: a request
// hangs instead of failing; and it retries at once, thousands of connections a second. The repair: the attempts
// for one waiting query back off, and once connect_timeout has passed since the first, the query is rejected
// (CONNECT_TIMEOUT) and the connection closes as after any other failure.
//
// Run by `npm install` (postinstall) and by the Containerfile; idempotent. It refuses a driver it does not know,
// so an upgrade makes someone check whether upstream fixed it (then drop this script) or adapt it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const MARKER = '/* agentidp: nextWrite repaired (scripts/patch-postgres-driver.mjs) */'

const REPLACEMENTS = [
  [
    `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)`,
    `  function nextWrite(fn) { ${MARKER}
    if (socket === null) {
      nextWriteTimer !== null && clearImmediate(nextWriteTimer)
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options, socket))
      return false
    }
    const x = socket.write(chunk, fn)`
  ],
  [
    `    clearImmediate(nextWriteTimer)
    if (socket) {`,
    `    clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null
    if (socket) {`
  ],
  [
    `    incomings = null
    clearImmediate(nextWriteTimer)`,
    `    incomings = null
    clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null`
  ],
  [
    `    socket.removeAllListeners()
    socket = null

    if (initial)
      return reconnect()
`,
    `    socket.removeAllListeners()
    socket = null

    if (initial) {
      initialSince || (initialSince = performance.now())
      if (performance.now() - initialSince < (options.connect_timeout || Infinity) * 1000) {
        closedTime = performance.now()
        delay = (typeof backoff === 'function' ? backoff(options.shared.retries) : backoff) * 1000
        return reconnect()
      }
      errored(Errors.connection('CONNECT_TIMEOUT', options, socket))
    }
    initialSince = 0
`
  ],
  [
    `    , nextWriteTimer = null
`,
    `    , nextWriteTimer = null
    , initialSince = 0
`
  ]
]

const require = createRequire(import.meta.url)
let root
try {
  // The package's exports do not name package.json: walk up from its entry point.
  root = dirname(require.resolve('postgres'))
  const isDriverRoot = (dir) => existsSync(join(dir, 'package.json')) && JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === 'postgres'
  while (!isDriverRoot(root)) {
    if (dirname(root) === root) throw new Error('postgres package.json not found')
    root = dirname(root)
  }
} catch {
  // Not installed (yet): nothing to repair.
  process.exit(0)
}
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

for (const file of ['src/connection.js', 'cjs/src/connection.js']) {
  const path = join(root, file)
  let source = readFileSync(path, 'utf8')
  if (source.includes(MARKER)) continue
  for (const [from, to] of REPLACEMENTS) {
    if (source.split(from).length !== 2) {
      console.error(`patch-postgres-driver: postgres ${version} ${file} is not the code this repair was written for; check whether upstream fixed nextWrite (porsager/postgres#1208), then drop or adapt scripts/patch-postgres-driver.mjs`)
      process.exit(1)
    }
    source = source.replace(from, to)
  }
  writeFileSync(path, source)
  console.log(`patch-postgres-driver: repaired nextWrite in postgres ${version} ${file}`)
}
