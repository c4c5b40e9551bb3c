import { createServer, type Socket } from 'node:net'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { assertDriverRepaired, createSql, DriverNotRepairedError } from '../../src/database.js'
import { isDatabaseUnavailable } from '../../src/errors.js'
import { OUTAGE_POOLS, setupTestContext } from '../helper.js'
import { bounded } from '../support/fuzz.js'
import { authHeaders, createAgent, createCredential } from '../support/management.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'
import { TcpProxy } from '../support/tcp-proxy.js'

const context = setupTestContext()

// However a dependency fails, a request must be answered within this: one connect_timeout (5 s) and change.
const REQUEST_BOUND_MS = 7000

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function send (app: App, options: InjectOptions): Promise<LightMyRequestResponse> {
  return await bounded(app.inject(options), REQUEST_BOUND_MS, `${options.method} ${options.url}`)
}

/** A 503 of the management API: problem+json, with Retry-After. */
function expectUnavailable (response: LightMyRequestResponse, what: string): void {
  expect(response.statusCode, `${what}: ${response.body}`).toBe(503)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  expect(response.json()).toMatchObject({ status: 503, title: 'Service Unavailable' })
  expect(response.headers['retry-after']).toBeDefined()
}

/** A mix of management calls: reads, writes (argon2 included), a state change. */
async function mixedRequests (app: App, agentId: string): Promise<InjectOptions[]> {
  const headers = await authHeaders(app)
  return [
    { method: 'GET', url: '/api/v1/agents?limit=5', headers },
    { method: 'GET', url: `/api/v1/agents/${agentId}`, headers },
    { method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'under load' } },
    { method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers, payload: { description: `at ${Date.now()}` } },
    { method: 'GET', url: `/api/v1/agents/${agentId}/credentials`, headers },
    { method: 'POST', url: `/api/v1/agents/${agentId}/credentials`, headers, payload: {} },
    { method: 'GET', url: '/api/v1/audit-events?limit=5', headers }
  ]
}

interface Traffic {
  /** Resolves once `count` answers have come back in all, however long that takes on this machine. */
  answered: (count: number) => Promise<number>
  stop: () => Promise<Array<{ what: string, response: LightMyRequestResponse }>>
}

/**
 * Sends the requests round-robin from `workers` concurrent clients until stop() resolves; returns every answer.
 * A request that fails to answer within the bound fails the test. Tests move on by answers counted, not by time.
 */
function load (app: App, requests: InjectOptions[], workers = concurrency): Traffic {
  let running = true
  const answers: Array<{ what: string, response: LightMyRequestResponse }> = []
  const waiting: Array<{ count: number, resolve: (count: number) => void }> = []
  const worker = async (offset: number): Promise<void> => {
    for (let i = offset; running; i++) {
      const options = requests[i % requests.length] as InjectOptions
      answers.push({ what: `${options.method} ${options.url}`, response: await send(app, options) })
      for (const waiter of waiting.filter((w) => answers.length >= w.count)) {
        waiting.splice(waiting.indexOf(waiter), 1)
        waiter.resolve(answers.length)
      }
    }
  }
  const done = Promise.all(Array.from({ length: workers }, (_, i) => worker(i)))
  return {
    async answered (count) {
      if (answers.length >= count) return answers.length
      return await new Promise<number>((resolve) => waiting.push({ count, resolve }))
    },
    async stop () {
      running = false
      await done
      return answers
    }
  }
}

// Concurrent clients, more than one connection serves: on a pool of one, requests queue in the driver.
const concurrency = 4

/** Sends the requests, `concurrency` at a time; answers in the order given. */
async function sendAll (app: App, requests: InjectOptions[]): Promise<LightMyRequestResponse[]> {
  const answers: LightMyRequestResponse[] = []
  for (let i = 0; i < requests.length; i += concurrency) {
    answers.push(...await Promise.all(requests.slice(i, i + concurrency).map(async (options) => await send(app, options))))
  }
  return answers
}

describe('the PostgreSQL driver, repaired (patches/postgres+3.4.9.patch)', () => {
  it('is installed with all its repairs, and a driver without them is refused with one line naming the fix', () => {
    expect(() => { assertDriverRepaired() }).not.toThrow()
    const unrepaired = Object.assign(() => {}, { [Symbol.for('agentidp.postgres.repairs')]: ['next-write', 'startup-close', 'pool-queue'] })
    for (const driver of [() => {}, unrepaired]) {
      const refusal = (() => { try { assertDriverRepaired(driver) } catch (error) { return error } })()
      expect(refusal).toBeInstanceOf(DriverNotRepairedError)
      expect((refusal as Error).message).not.toContain('\n')
      expect((refusal as Error).message).toContain('array-types')
      expect((refusal as Error).message).toContain('npm ci')
    }
  })

  it('a server that accepts and at once closes (a proxy with no backend) fails the query within connect_timeout, never hangs', async () => {
    const sockets = new Set<Socket>()
    const server = createServer((socket) => { sockets.add(socket); socket.end() })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    })
    const sql = createSql(`postgres://postgres@127.0.0.1:${(server.address() as { port: number }).port}/postgres`, 1)
    cleanups.push(() => sql.end({ timeout: 1 }))
    const error = await bounded(sql`select 1`.then(() => undefined, (reason: unknown) => reason), REQUEST_BOUND_MS, 'select 1')
    expect((error as { code?: string }).code).toBe('CONNECT_TIMEOUT')
    expect(isDatabaseUnavailable(error)).toBe(true)
  }, 20_000)

  it('a connection reset while it fetches the array types: a catchable error for the query waiting on it, no unhandled rejection; back by itself', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    cleanups.push(async () => { process.off('unhandledRejection', onUnhandled) })
    const proxy = await TcpProxy.start(context.database.url)
    cleanups.push(() => proxy.close())
    const sql = createSql(proxy.through(context.database.url), 1)
    cleanups.push(() => sql.end({ timeout: 1 }))
    const query = async (): Promise<unknown> => await bounded(sql`select ${[1, 2]}::int[] as a`.then((rows) => rows[0], (reason: unknown) => reason), REQUEST_BOUND_MS, 'select')

    // The driver's first statement on a new connection, its array-type query (fetch_types), is answered by a reset.
    proxy.resetWhenClientSends('typarray')
    const error = await query()
    expect((error as { code?: string }).code).toBe('ECONNRESET')
    expect(isDatabaseUnavailable(error)).toBe(true)
    // Node reports an unhandled rejection once the microtasks of the tick that made it have run: before any immediate.
    await new Promise((resolve) => setImmediate(resolve))
    expect(unhandled).toEqual([])
    // Back by itself, the types fetched again on a new connection: arrays still parse. A query sent before the dead
    // connection closed waits behind its failed attempt and fails with it (the pool-queue repair); the next connects.
    const next = await query()
    expect(isDatabaseUnavailable(next) ? await query() : next).toEqual({ a: [1, 2] })
  }, 30_000)

  it('a pool of ONE connection: queries queued while PostgreSQL is unreachable fail with the attempt, not one attempt after another; back by itself', async () => {
    const proxy = await TcpProxy.start(context.database.url)
    cleanups.push(() => proxy.close())
    const sql = createSql(proxy.through(context.database.url), 1)
    cleanups.push(() => sql.end({ timeout: 1 }))
    const query = async (n: number): Promise<unknown> => await bounded(sql`select ${n}::int as n`.then((rows) => rows[0], (reason: unknown) => reason), REQUEST_BOUND_MS, `query ${n}`)
    expect(await query(0)).toEqual({ n: 0 })

    proxy.cut()
    // The connection sees the cut (the query sent on it fails); the next query starts an attempt to connect.
    expect(isDatabaseUnavailable(await query(1))).toBe(true)
    // One starts the attempt, the others wait in the pool's queue behind it: each used to wait an attempt more.
    const queued = await Promise.all([2, 3, 4].map(query))
    for (const error of queued) expect(isDatabaseUnavailable(error), String(error)).toBe(true)

    proxy.restore()
    expect(await Promise.all([5, 6].map(query))).toEqual([{ n: 5 }, { n: 6 }])
  }, 30_000)
})

describe('PostgreSQL stopped under load (a TCP proxy the test controls)', () => {
  it.for(OUTAGE_POOLS)('%s: answers 503 problem+json, never a 500 or a hang; /health/ready 503; comes back by itself', { timeout: 90_000 }, async ([, env], test) => {
    context.skipRepeatedPool(env, test)
    const proxy = await TcpProxy.start(context.database.url)
    cleanups.push(() => proxy.close())
    const app = await context.build({ DATABASE_URL: proxy.through(context.database.url), RATE_LIMIT_API_PER_MIN: '0', ...env })
    const agent = await createAgent(app)
    const requests = await mixedRequests(app, agent.id)

    const traffic = load(app, requests)
    // Traffic flows: every request has been answered once; the cut lands on requests in flight.
    const beforeCut = await traffic.answered(requests.length)
    proxy.cut()
    // And goes on: as many again answered after the cut.
    await traffic.answered(beforeCut + requests.length)
    const answers = await traffic.stop()

    for (const { what, response } of answers) {
      // Whatever was in flight when the connection dropped either completed or is a 503: never a 500.
      if (response.statusCode >= 500) expectUnavailable(response, what)
      else expect(response.statusCode, `${what}: ${response.body}`).toBeLessThan(300)
    }
    // Once the cut is seen, every call is a 503 (each answered within the bound, checked by send).
    const whileDown = await sendAll(app, requests)
    whileDown.forEach((response, i) => { expectUnavailable(response, `${requests[i]?.method} ${requests[i]?.url} while down`) })
    const ready = await send(app, { method: 'GET', url: '/health/ready' })
    expect(ready.statusCode).toBe(503)
    expect(ready.json().checks.postgres.status).toBe('down')
    expect((await send(app, { method: 'GET', url: '/health/live' })).statusCode).toBe(200)

    proxy.restore()
    await expect.poll(async () => (await send(app, requests[0] as InjectOptions)).statusCode, { timeout: 15_000, interval: 200 }).toBe(200)
    for (const options of requests) expect((await send(app, options)).statusCode, `${options.method} ${options.url} after restore`).toBeLessThan(300)
    expect((await send(app, { method: 'GET', url: '/health/ready' })).statusCode).toBe(200)
  })
})

describe.skipIf(!hasRedisServer)('Redis stopped (a redis-server of the test\'s own)', () => {
  it('the management API keeps working from PostgreSQL, revocations still hold, usage is a 503; back by itself', async () => {
    const redis = await OwnRedisServer.start()
    cleanups.push(() => redis.stop())
    const app = await context.build({ REDIS_URL: redis.url })
    const agent = await createAgent(app)
    const headers = await authHeaders(app)
    const usage: InjectOptions = { method: 'GET', url: `/api/v1/agents/${agent.id}/usage`, headers }
    expect((await send(app, usage)).statusCode).toBe(200)
    // A token of the agent, alive before Redis goes.
    const { mintAccessToken } = await import('../support/tokens.js')
    const agentToken = { authorization: `Bearer ${await mintAccessToken(app, { sub: agent.id })}` }
    expect((await send(app, { method: 'GET', url: '/api/v1/agents', headers: agentToken })).statusCode).toBe(200)

    await redis.stop()
    const credential = await createCredential(app, agent.id)
    for (const options of [
      { method: 'GET', url: '/api/v1/agents', headers },
      { method: 'POST', url: '/api/v1/agents', headers, payload: { name: 'while redis is down' } },
      { method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers, payload: { status: 'suspended' } },
      { method: 'GET', url: `/api/v1/agents/${agent.id}/credentials`, headers },
      { method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${credential.id as string}`, headers },
      { method: 'GET', url: '/api/v1/audit-events?limit=5', headers }
    ] satisfies InjectOptions[]) {
      const response = await send(app, options)
      expect(response.statusCode, `${options.method} ${options.url}: ${response.body}`).toBeLessThan(300)
    }
    // The suspension reached only PostgreSQL; the bearer check reads it there.
    const refused = await send(app, { method: 'GET', url: '/api/v1/agents', headers: agentToken })
    expect(refused.statusCode).toBe(401)
    expectUnavailable(await send(app, usage), 'usage while Redis is down')
    expect((await send(app, { method: 'GET', url: '/health/ready' })).json().checks.redis.status).toBe('down')

    await redis.start()
    await expect.poll(async () => (await send(app, usage)).statusCode, { timeout: 15_000, interval: 200 }).toBe(200)
    // Redis came back empty (no persistence): the suspension still holds, refilled from PostgreSQL.
    expect((await send(app, { method: 'GET', url: '/api/v1/agents', headers: agentToken })).statusCode).toBe(401)
  }, 90_000)

  it.for(OUTAGE_POOLS)('%s: both stopped at once: no crash, 503s, liveness still answers; both back, service back', { timeout: 90_000 }, async ([, env], test) => {
    context.skipRepeatedPool(env, test)
    const redis = await OwnRedisServer.start()
    cleanups.push(() => redis.stop())
    const proxy = await TcpProxy.start(context.database.url)
    cleanups.push(() => proxy.close())
    const app = await context.build({ REDIS_URL: redis.url, DATABASE_URL: proxy.through(context.database.url), RATE_LIMIT_API_PER_MIN: '0', ...env })
    const agent = await createAgent(app)
    const requests = await mixedRequests(app, agent.id)

    const traffic = load(app, requests)
    const beforeCut = await traffic.answered(requests.length)
    proxy.cut()
    await redis.stop()
    await traffic.answered(beforeCut + requests.length)
    const answers = await traffic.stop()
    for (const { what, response } of answers) {
      if (response.statusCode >= 500) expectUnavailable(response, what)
      else expect(response.statusCode, `${what}: ${response.body}`).toBeLessThan(300)
    }
    const whileDown = await sendAll(app, requests)
    whileDown.forEach((response, i) => { expectUnavailable(response, `${requests[i]?.method} ${requests[i]?.url} while both are down`) })
    const ready = await send(app, { method: 'GET', url: '/health/ready' })
    expect(ready.statusCode).toBe(503)
    expect(ready.json().checks).toMatchObject({ postgres: { status: 'down' }, redis: { status: 'down' } })
    expect((await send(app, { method: 'GET', url: '/health/live' })).statusCode).toBe(200)
    expect((await send(app, { method: 'GET', url: '/metrics' })).statusCode).toBe(200)

    proxy.restore()
    await redis.start()
    await expect.poll(async () => (await send(app, { method: 'GET', url: '/health/ready' })).statusCode, { timeout: 15_000, interval: 200 }).toBe(200)
    for (const options of requests) expect((await send(app, options)).statusCode, `${options.method} ${options.url} after restore`).toBeLessThan(300)
  })
})
if (!hasRedisServer) it.skip('redis-server is not installed on this machine: Redis fault tests skipped', () => {})
