import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'
import { TcpProxy } from '../support/tcp-proxy.js'

const context = setupTestContext()

describe.skipIf(!hasRedisServer)('readiness when Redis goes away (a redis-server of the test\'s own)', () => {
  let redis: OwnRedisServer
  beforeAll(async () => { redis = await OwnRedisServer.start() })
  afterAll(async () => { await redis.stop() })

  it('reports 503 naming Redis while it is down, and recovers by itself', async () => {
    const app = await context.build({ REDIS_URL: redis.url })
    expect((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200)
    await redis.stop()
    const down = await app.inject({ method: 'GET', url: '/health/ready' })
    expect(down.statusCode).toBe(503)
    expect(down.json()).toMatchObject({ status: 'unavailable', checks: { redis: { status: 'down' }, postgres: { status: 'up' } } })
    expect((await app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200)
    await redis.start()
    await expect.poll(async () => (await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, { timeout: 10_000, interval: 200 }).toBe(200)
  })
})
if (!hasRedisServer) it.skip('redis-server is not installed on this machine: Redis fault tests skipped', () => {})

describe('readiness when PostgreSQL goes away (a TCP proxy the test controls)', () => {
  it('reports 503 naming PostgreSQL, answers quickly, and recovers by itself', async () => {
    const proxy = await TcpProxy.start(context.database.url)
    try {
      const app = await context.build({ DATABASE_URL: proxy.through(context.database.url) })
      expect((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200)
      proxy.cut()
      const down = await app.inject({ method: 'GET', url: '/health/ready' })
      expect(down.statusCode).toBe(503)
      expect(down.json()).toMatchObject({ status: 'unavailable', checks: { postgres: { status: 'down' }, redis: { status: 'up' } } })
      proxy.restore()
      await expect.poll(async () => (await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, { timeout: 15_000, interval: 200 }).toBe(200)
    } finally {
      await proxy.close()
    }
  })
})
