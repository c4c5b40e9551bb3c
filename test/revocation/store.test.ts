import { DEFAULT_ORG_ID } from '../../src/database.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { newId, timeOfId } from '../../src/ids.js'
import { COMPLETE_MARKER_KEY, type TokenRef } from '../../plugins/revocation/state.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'

const context = setupTestContext()

async function agentIn (app: Awaited<ReturnType<typeof context.build>>): Promise<string> {
  const id = newId()
  await ownerSql(app)`insert into agents (id, client_id, name) values (${id}, ${'c_' + id}, 'revocation test')`
  return id
}

function tokenOf (agentId: string, credentialId?: string): TokenRef {
  const jti = newId()
  return { orgId: DEFAULT_ORG_ID, jti, agentId, credentialId, issuedAtMs: timeOfId(jti), expiresAtMs: Date.now() + 3600_000 }
}

describe('revocation state', () => {
  it('a revoked jti is revoked, in both stores; others are not', async () => {
    const app = await context.build()
    const agentId = await agentIn(app)
    const revoked = tokenOf(agentId)
    const other = tokenOf(agentId)
    await app.revocations.revokeToken(revoked, 'test')
    expect(await app.revocations.isRevoked(revoked)).toBe(true)
    expect(await app.revocations.isRevoked(other)).toBe(false)
    const rows = await ownerSql(app)`select jti, agent_id, reason from token_revocations`
    expect(rows.map((r) => r.jti)).toEqual([revoked.jti])
    expect(await app.store.get(`revoked:${revoked.jti}`)).toBe('1')
  })

  it('an agent watermark kills tokens issued up to that millisecond, not after', async () => {
    const app = await context.build()
    const agentId = await agentIn(app)
    const before = tokenOf(agentId)
    await sleep(3)
    const markMs = Date.now()
    await ownerSql(app)`update agents set tokens_invalid_before = ${new Date(markMs)} where id = ${agentId}`
    await app.revocations.publishWatermarks({ agents: [agentId], atMs: markMs })
    await sleep(3)
    const after = tokenOf(agentId)
    expect(await app.revocations.isRevoked(before)).toBe(true)
    expect(await app.revocations.isRevoked(after)).toBe(false)
  })

  it('a credential watermark kills that credential\'s tokens only', async () => {
    const app = await context.build()
    const agentId = await agentIn(app)
    const [revokedCredential, liveCredential] = [newId(), newId()]
    await ownerSql(app)`insert into credentials (id, agent_id, secret_hash) values (${revokedCredential}, ${agentId}, 'x'), (${liveCredential}, ${agentId}, 'y')`
    const ofRevoked = tokenOf(agentId, revokedCredential)
    const ofLive = tokenOf(agentId, liveCredential)
    await sleep(2)
    const markMs = Date.now()
    await ownerSql(app)`update credentials set revoked_at = ${new Date(markMs)} where id = ${revokedCredential}`
    await app.revocations.publishWatermarks({ credentials: [revokedCredential], atMs: markMs })
    expect(await app.revocations.isRevoked(ofRevoked)).toBe(true)
    expect(await app.revocations.isRevoked(ofLive)).toBe(false)
  })

  it('prunes rows of tokens that expired anyway', async () => {
    const app = await context.build()
    const agentId = await agentIn(app)
    await ownerSql(app)`insert into token_revocations (jti, agent_id, expires_at) values ('old', ${agentId}, now() - interval '1 minute')`
    const live = tokenOf(agentId)
    await app.revocations.revokeToken(live, 'test')
    expect(await app.revocations.prune()).toBe(1)
    expect((await ownerSql(app)`select jti from token_revocations where agent_id = ${agentId}`).map((r) => r.jti)).toEqual([live.jti])
  })

  it('two replicas on one PostgreSQL and Redis: a revocation through one holds on the other at once', async (test) => {
    context.requireServerDatabase(test)
    const first = await context.build()
    const agentId = await agentIn(first)
    const second = await context.build()
    const token = tokenOf(agentId)
    expect(await second.revocations.isRevoked(token)).toBe(false)
    await first.revocations.revokeToken(token, 'test')
    expect(await second.revocations.isRevoked(token)).toBe(true)
  })
})

describe.skipIf(!hasRedisServer)('when Redis loses everything or goes away (a redis-server of the test\'s own)', () => {
  let redis: OwnRedisServer
  beforeAll(async () => { redis = await OwnRedisServer.start() })
  afterAll(async () => { await redis.stop() })

  /** A replica on the test's Redis that revoked a token, and a client of that Redis of the test's own. */
  async function revokedTokenWithClient () {
    const app = await context.build({ REDIS_URL: redis.url })
    const agentId = await agentIn(app)
    const token = tokenOf(agentId)
    await app.revocations.revokeToken(token, 'test')
    const client = createClient({ url: redis.url })
    await client.connect()
    return { app, agentId, token, client }
  }

  it('FLUSHALL between revoke and check: the token stays revoked, and Redis is refilled', async () => {
    const { app, agentId, token, client } = await revokedTokenWithClient()
    try {
      await client.flushAll()
      expect(await app.revocations.isRevoked(token)).toBe(true)
      await expect.poll(async () => await client.get(`revoked:${token.jti}`), { timeout: 10_000, interval: 200 }).toBe('1')
      await expect.poll(async () => await client.get(COMPLETE_MARKER_KEY), { timeout: 10_000, interval: 200 }).not.toBeNull()
    } finally {
      await client.close()
    }
    expect(await app.revocations.isRevoked(token)).toBe(true)
    expect(await app.revocations.isRevoked(tokenOf(agentId))).toBe(false)
  })

  it('FLUSHALL in the middle of a refill: the marker never vouches for what the flush lost; the next refill copies it', async () => {
    const { app, token, client } = await revokedTokenWithClient()
    try {
      await expect.poll(async () => await client.get(COMPLETE_MARKER_KEY), { timeout: 10_000, interval: 100 }).not.toBeNull()
      // The flush lands right after a refill copied the token's key and before it sets the marker.
      const copy = app.store.setMany.bind(app.store)
      let flushed = false
      app.store.setMany = async (entries) => {
        await copy(entries)
        if (!flushed && entries.some((entry) => entry.key === `revoked:${token.jti}`)) {
          flushed = true
          await client.flushAll()
        }
      }
      await client.del(COMPLETE_MARKER_KEY)
      await app.revocations.sync()
      await expect.poll(() => flushed, { timeout: 10_000, interval: 50 }).toBe(true)
      // From here on, whenever the marker is there, so is the revoked token's key.
      await expect.poll(async () => await client.get(COMPLETE_MARKER_KEY), { timeout: 10_000, interval: 50 }).not.toBeNull()
      expect(await client.get(`revoked:${token.jti}`)).toBe('1')
      await expect.poll(() => app.revocations.trustsStore(), { timeout: 10_000, interval: 100 }).toBe(true)
      expect(await app.revocations.isRevoked(token)).toBe(true)
    } finally {
      await client.close()
    }
  })

  it('Redis down: checks and revocations work from PostgreSQL, quickly; back up, it is used again', async () => {
    const app = await context.build({ REDIS_URL: redis.url })
    const agentId = await agentIn(app)
    const before = tokenOf(agentId)
    await redis.stop()
    const started = Date.now()
    await app.revocations.revokeToken(before, 'while redis was down')
    expect(await app.revocations.isRevoked(before)).toBe(true)
    expect(await app.revocations.isRevoked(tokenOf(agentId))).toBe(false)
    expect(Date.now() - started).toBeLessThan(5000)
    await redis.start()
    const client = createClient({ url: redis.url })
    await client.connect()
    // The restarted Redis is empty; the replica refills it from PostgreSQL by itself.
    await expect.poll(async () => await client.get(`revoked:${before.jti}`), { timeout: 10_000, interval: 200 }).toBe('1')
    await client.close()
    expect(await app.revocations.isRevoked(before)).toBe(true)
  })
})
