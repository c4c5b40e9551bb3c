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
// And a third, in the pool (src/index.js): a query that finds no connection ready waits in the pool's queue; when the
// attempt to connect fails, only the query that started it is rejected, and the connection starts a new attempt, with
// a fresh connect_timeout, for the next query in the queue: one at a time. With several connections the attempts run
// side by side and keep up; with ONE (DATABASE_POOL_SIZE=1) the n-th query waits n attempts, and queries arrive
// faster than attempts time out (the revocation sync check alone queries every second, against one attempt per 5 s
// when PostgreSQL does not answer): the queue grows for as long as PostgreSQL is away and every request waits behind
// it, far past connect_timeout. The repair: when an attempt fails (its query rejected before the server answered
// ReadyForQuery: CONNECT_TIMEOUT, ECONNREFUSED, an error at startup), the connection hands that error to the pool,
// which rejects the queued queries with it too (one error for several queries, as the driver does for pipelined
// ones), unless another connection is open, busy, in a transaction or still connecting and could serve them; the
// next query starts a new attempt. A query so waits at most one attempt, about connect_timeout.
//
// Run by `npm install` (postinstall) and by the Containerfile; idempotent. It refuses a driver it does not know,
// so an upgrade makes someone check whether upstream fixed it (then drop this script) or adapt it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const MARKER = '/* agentidp: nextWrite repaired (scripts/patch-postgres-driver.mjs) */'

const CONNECTION_REPLACEMENTS = [
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
  ],
  // The third defect, the connection's half: remember the error of a failed attempt, forget it once the server
  // answered ReadyForQuery (the connection works), and hand it to the pool when the connection closes.
  [
    `    , terminated = false
`,
    `    , failedAttempt = null
    , terminated = false
`
  ],
  [
    `    initial && (queryError(initial, err), initial = null)
`,
    `    initial && (queryError(initial, err), initial = null, failedAttempt = err)
`
  ],
  [
    `    result = new Result()
    connectTimer.cancel()
`,
    `    result = new Result()
    connectTimer.cancel()
    failedAttempt = null
`
  ],
  [
    `    onclose(connection, Errors.connection('CONNECTION_CLOSED', options, socket))
`,
    `    const failed = failedAttempt
    failedAttempt = null
    onclose(connection, Errors.connection('CONNECTION_CLOSED', options, socket), failed)
`
  ]
]

const POOL_MARKER = '/* agentidp: a failed connect fails the queue (scripts/patch-postgres-driver.mjs) */'

// The third defect, the pool's half: with no other connection that could serve them, the queries queued behind a
// failed attempt fail with it instead of each waiting for an attempt of its own.
const POOL_REPLACEMENTS = [
  [
    `  function onclose(c, e) {
    move(c, closed)
    c.reserved = null
    c.onclose && (c.onclose(e), c.onclose = null)
    options.onclose && options.onclose(c.id)
    queries.length && connect(c, queries.shift())
`,
    `  function onclose(c, e, failed) { ${POOL_MARKER}
    move(c, closed)
    c.reserved = null
    c.onclose && (c.onclose(e), c.onclose = null)
    options.onclose && options.onclose(c.id)
    if (failed && !open.length && !busy.length && !full.length && !reserved.length && !connecting.length)
      while (queries.length) queries.shift().reject(failed)
    queries.length && connect(c, queries.shift())
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

const FILES = [
  ['src/connection.js', CONNECTION_REPLACEMENTS],
  ['cjs/src/connection.js', CONNECTION_REPLACEMENTS],
  ['src/index.js', POOL_REPLACEMENTS],
  ['cjs/src/index.js', POOL_REPLACEMENTS]
]

for (const [file, replacements] of FILES) {
  const path = join(root, file)
  let source = readFileSync(path, 'utf8')
  let applied = 0
  for (const [from, to] of replacements) {
    // Each replacement once: one already there (an install repaired by an earlier version of this script) is kept.
    if (source.includes(to)) continue
    if (source.split(from).length !== 2) {
      console.error(`patch-postgres-driver: postgres ${version} ${file} is not the code this repair was written for; check whether upstream fixed the defects above (porsager/postgres#1208), then drop or adapt scripts/patch-postgres-driver.mjs`)
      process.exit(1)
    }
    source = source.replace(from, to)
    applied++
  }
  if (applied === 0) continue
  writeFileSync(path, source)
  console.log(`patch-postgres-driver: repaired postgres ${version} ${file}`)
}
