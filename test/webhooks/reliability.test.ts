import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { setupTestContext } from '../helper.js'
import { authHeaders, createAgent } from '../support/management.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'
import { eventually, Receiver, verify } from './receiver.js'

const context = setupTestContext()
context.env = {
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true',
  WEBHOOK_RETRY_SCHEDULE: '50ms,50ms,50ms',
  WEBHOOK_POLL_INTERVAL_MS: '50',
  // The lease of a worker that dies runs out after 2 × this + 5 s.
  WEBHOOK_TIMEOUT_MS: '1000'
}

let receiver: Receiver
let server: ServerProcess | undefined
beforeEach(async () => { receiver = await Receiver.start() })
afterEach(async () => {
  server?.kill()
  server = undefined
  await receiver.close()
})

async function subscribe (app: App, events: string[] = ['agent.created']): Promise<{ id: string, secret: string }> {
  const response = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: await authHeaders(app), payload: { url: receiver.url, events } })
  expect(response.statusCode, response.body).toBe(201)
  return response.json()
}

async function deliveries (app: App, id: string): Promise<Array<Record<string, any>>> {
  const response = await app.inject({ method: 'GET', url: `/api/v1/webhooks/${id}/deliveries?limit=100`, headers: await authHeaders(app) })
  return response.json().items
}

describe('webhook delivery across restarts and replicas', () => {
  it('stops within the shutdown timeout with a delivery in flight, which the next start sends again with the same webhook-id', async () => {
    // The receiver never answers the first attempt; the worker's attempt would wait 10 s, shutdown gives it 0.5 s.
    const first = await context.build({ WEBHOOK_TIMEOUT_MS: '10000', SHUTDOWN_TIMEOUT_MS: '1000' })
    const { id, secret } = await subscribe(first)
    receiver.answers = ['hang']
    await createAgent(first, { name: 'in flight' })
    await receiver.until((received) => received.length === 1)
    const closing = Date.now()
    await first.close()
    // Well before the attempt's own 10 s: the worker aborted it at half of SHUTDOWN_TIMEOUT_MS.
    expect(Date.now() - closing).toBeLessThan(9000)
    // Not counted as an attempt of the receiver's: left pending, the lease let go.
    const [row] = await context.build().then(async (second) => {
      const [delivery] = await eventually(async () => { const list = await deliveries(second, id); return list[0]?.status === 'succeeded' ? list : undefined })
      return [delivery]
    })
    expect(row).toMatchObject({ status: 'succeeded', attempts: 1 })
    const received = await receiver.until((requests) => requests.length === 2)
    expect(received[1]!.headers['webhook-id']).toBe(received[0]!.headers['webhook-id'])
    expect(() => verify(secret, received[1]!)).not.toThrow()
  })

  it('resumes from its cursor after a restart: events committed while no worker ran are delivered, in order, once', async () => {
    const first = await context.build()
    const { id } = await subscribe(first)
    await first.close()
    // No app, no worker: the trail goes on (another replica's events, say).
    const writer = await context.build({ WEBHOOK_POLL_INTERVAL_MS: '60000' })
    await writer.webhookWorker.stop(0)
    for (const name of ['a', 'b', 'c']) await createAgent(writer, { name })
    await writer.close()
    const second = await context.build()
    await second.ready()
    const received = await receiver.until((requests) => requests.length >= 3)
    expect(received.map((request) => request.json.data.name)).toEqual(['a', 'b', 'c'])
    await eventually(async () => ((await deliveries(second, id)).every((delivery) => delivery.status === 'succeeded') ? true : undefined))
    expect(receiver.received).toHaveLength(3)
  })

  it('carries on after a server is killed mid-delivery: another start delivers the same webhook-id once the lease runs out', async () => {
    // The event is committed while no worker runs; the server started next is the one that delivers it.
    const setup = await context.build()
    const { id, secret } = await subscribe(setup)
    await setup.webhookWorker.stop(0)
    await createAgent(setup, { name: 'killed' })
    await setup.close()

    const port = await freePort()
    receiver.answers = ['hang']
    server = ServerProcess.start({
      NODE_ENV: 'test',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: context.dataDir,
      DATABASE_URL: context.database.url,
      DATABASE_POOL_SIZE: String(context.database.poolSize),
      ...(context.redisUrl === undefined ? {} : { REDIS_URL: context.redisUrl }),
      ...context.env
    })
    await server.listening()
    await receiver.until((received) => received.length === 1)
    server.kill()
    await server.exited

    const restarted = await context.build()
    await restarted.ready()
    const received = await receiver.until((requests) => requests.length === 2, 30_000)
    expect(received[1]!.headers['webhook-id']).toBe(received[0]!.headers['webhook-id'])
    expect(() => verify(secret, received[1]!)).not.toThrow()
    const [delivery] = await eventually(async () => { const list = await deliveries(restarted, id); return list[0]?.status === 'succeeded' ? list : undefined })
    expect(delivery).toMatchObject({ status: 'succeeded', attempts: 1, event_type: 'agent.created' })
  })

  it('two replicas against one receiver: each event delivered once, in order (real PostgreSQL only: PGlite has one session)', async (test) => {
    context.requireServerDatabase(test)
    const one = await context.build()
    const two = await context.build()
    await Promise.all([one.ready(), two.ready()])
    const subscriptions = [await subscribe(one, ['token.issued']), await subscribe(two, ['token.issued'])]
    receiver.otherwise = { status: 204 }
    const count = 40
    await Promise.all(Array.from({ length: count }, async (_, n) => await (n % 2 === 0 ? one : two).audit.record({ orgId: DEFAULT_ORG_ID, type: 'token.issued', actor: `replica-${n % 2}`, data: { n } })))
    const received = await receiver.until((requests) => requests.length >= 2 * count, 30_000)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(receiver.received).toHaveLength(2 * count)
    for (const subscription of subscriptions) {
      const mine = received.filter((request) => { try { verify(subscription.secret, request); return true } catch { return false } })
      expect(mine).toHaveLength(count)
      expect(new Set(mine.map((request) => request.headers['webhook-id'])).size).toBe(count)
      const seqs = mine.map((request) => BigInt(request.json.event!.seq))
      expect([...seqs].sort((a, b) => (a < b ? -1 : 1))).toEqual(seqs)
      // The receiver may have answered before the worker recorded the answer: wait for the record.
      const listed = await eventually(async () => { const list = await deliveries(one, subscription.id); return list.every((delivery) => delivery.status !== 'pending') ? list : undefined })
      expect(listed.every((delivery) => delivery.attempts === 1 && delivery.status === 'succeeded')).toBe(true)
    }
  })
})
