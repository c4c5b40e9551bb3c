import { DEFAULT_ORG_ID } from '../../src/database.js'
import { generateKeyPairSync } from 'node:crypto'
import { createClient } from 'redis'
import { afterEach, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { newId, timeOfId } from '../../src/ids.js'
import { COMPLETE_MARKER_KEY, type TokenRef } from '../../plugins/revocation/state.js'
import { createTestDatabase, LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { hasRedisServer, OwnRedisServer } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const VOLATILE_LRU = ['--maxmemory-policy', 'volatile-lru']
const CONFIG_REFUSED = ['--rename-command', 'CONFIG', '']

const servers: OwnRedisServer[] = []
afterEach(async () => { await Promise.all(servers.splice(0).map(async (server) => { await server.stop() })) })

async function ownRedis (args: string[] = []): Promise<OwnRedisServer> {
  const server = await OwnRedisServer.start(args)
  servers.push(server)
  return server
}

/**
 * A token revoked in PostgreSQL alone: only an answer from PostgreSQL says it is revoked, so isRevoked tells who
 * answered (as Redis would after evicting its revoked: key while the marker stayed).
 */
async function revokedInPostgresOnly (app: App): Promise<TokenRef> {
  const jti = newId()
  const token: TokenRef = { orgId: DEFAULT_ORG_ID, jti, agentId: newId(), issuedAtMs: timeOfId(jti), expiresAtMs: Date.now() + 3600_000 }
  await ownerSql(app)`insert into token_revocations (jti, agent_id, expires_at, reason) values (${jti}, ${token.agentId}, ${new Date(token.expiresAtMs)}, 'test')`
  return token
}

/** Waits until the app has filled Redis and compared the marker again, then says whether it trusts Redis. */
async function trustsAfterSync (app: App, url: string): Promise<boolean> {
  const client = createClient({ url })
  await client.connect()
  try {
    await expect.poll(async () => await client.get(COMPLETE_MARKER_KEY), { timeout: 10_000 }).not.toBeNull()
  } finally {
    await client.close()
  }
  await app.revocations.sync()
  return app.revocations.trustsStore()
}

async function pollTrust (app: App, expected: boolean): Promise<void> {
  await expect.poll(async () => { await app.revocations.sync(); return app.revocations.trustsStore() }, { timeout: 15_000 }).toBe(expected)
}

/**
 * Starts the server as a process in production on this file's database and the Redis given; resolves to what it
 * wrote to stderr once it exited with 1. A process: a start refused half-way leaves no connection behind.
 */
async function refusedProductionStart (redisUrl: string, env: Record<string, string> = {}): Promise<string> {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
  const server = ServerProcess.start({
    NODE_ENV: 'production',
    ISSUER: 'https://idp.example.com',
    PORT: '0',
    LOG_LEVEL: 'silent',
    DATABASE_URL: context.database.url,
    DATABASE_POOL_SIZE: String(context.database.poolSize),
    REDIS_URL: redisUrl,
    JWT_PRIVATE_KEY: pair.privateKey,
    JWT_PUBLIC_KEY: pair.publicKey,
    ...env
  })
  expect(await server.exited).toBe(1)
  return server.stderr.trim()
}

describe.skipIf(!hasRedisServer)('Redis that may evict revoked: keys (a redis-server of the test\'s own)', () => {
  it('noeviction: Redis answers revocation checks', async () => {
    const redis = await ownRedis()
    const app = await context.build({ REDIS_URL: redis.url })
    expect(app.storeKeepsKeys()).toBe(true)
    expect(await trustsAfterSync(app, redis.url)).toBe(true)
    expect(await app.revocations.isRevoked(await revokedInPostgresOnly(app))).toBe(false)
  })

  it('volatile-lru outside production: an error line naming maxmemory-policy, and PostgreSQL answers', async () => {
    const redis = await ownRedis(VOLATILE_LRU)
    const logs = new LogCapture()
    const app = await context.build({ REDIS_URL: redis.url }, { logs })
    expect(await trustsAfterSync(app, redis.url)).toBe(false)
    expect(await app.revocations.isRevoked(await revokedInPostgresOnly(app))).toBe(true)
    const line = logs.lines.map((text) => JSON.parse(text)).find((entry) => /maxmemory-policy/.test(entry.msg))
    expect(line).toMatchObject({ level: 50 })
    expect(line.msg).toMatch(/maxmemory-policy is volatile-lru .*noeviction/)
  })

  it('volatile-lru in production: refuses to start with one line naming maxmemory-policy and the fix', async () => {
    const redis = await ownRedis(VOLATILE_LRU)
    expect(await refusedProductionStart(redis.url)).toBe('agentidp: configuration error: Redis maxmemory-policy is volatile-lru (CONFIG GET), ' +
      'which may evict revoked: keys and bring revoked tokens back: set maxmemory-policy noeviction on Redis')
  })

  it('a reconnect to a Redis that may evict stops the trust; noeviction again restores it', async () => {
    const redis = await ownRedis()
    const logs = new LogCapture()
    const app = await context.build({ REDIS_URL: redis.url }, { logs })
    await pollTrust(app, true)
    await redis.stop()
    redis.args = VOLATILE_LRU
    await redis.start()
    await expect.poll(() => logs.text, { timeout: 15_000 }).toMatch(/maxmemory-policy is volatile-lru/)
    expect(await trustsAfterSync(app, redis.url)).toBe(false)
    expect(await app.revocations.isRevoked(await revokedInPostgresOnly(app))).toBe(true)
    await redis.stop()
    redis.args = []
    await redis.start()
    await pollTrust(app, true)
  })

  it('CONFIG refused: not trusted unless REDIS_MAXMEMORY_POLICY asserts noeviction; in production it refuses to start', async () => {
    const redis = await ownRedis(CONFIG_REFUSED)
    const logs = new LogCapture()
    const unasserted = await context.build({ REDIS_URL: redis.url }, { logs })
    expect(unasserted.storeKeepsKeys()).toBe(false)
    expect(logs.text).toMatch(/maxmemory-policy cannot be read \(CONFIG GET is refused\) and REDIS_MAXMEMORY_POLICY is not set/)
    // One app at a time: PGlite has a single session.
    await unasserted.close()
    expect(await refusedProductionStart(redis.url)).toMatch(/^agentidp: configuration error: Redis maxmemory-policy cannot be read .*REDIS_MAXMEMORY_POLICY=noeviction$/)
    expect(await refusedProductionStart(redis.url, { REDIS_MAXMEMORY_POLICY: 'allkeys-lru' })).toMatch(/^agentidp: configuration error: Redis maxmemory-policy is allkeys-lru \(REDIS_MAXMEMORY_POLICY\), /)
    const asserted = await context.build({ REDIS_URL: redis.url, REDIS_MAXMEMORY_POLICY: 'noeviction' })
    expect(asserted.storeKeepsKeys()).toBe(true)
    expect(await trustsAfterSync(asserted, redis.url)).toBe(true)
  })

  it('a marker filled from another database is not trusted (two databases, one Redis db)', async () => {
    const redis = await ownRedis()
    const first = await context.build({ REDIS_URL: redis.url })
    await pollTrust(first, true)
    const other = await createTestDatabase()
    try {
      const logs = new LogCapture()
      const second = await context.build({ REDIS_URL: redis.url, DATABASE_URL: other.url, DATABASE_POOL_SIZE: String(other.poolSize) }, { logs })
      // Both databases are at epoch 0: only their identities tell the markers apart.
      expect(second.revocations.trustsStore()).toBe(false)
      expect(await second.revocations.isRevoked(await revokedInPostgresOnly(second))).toBe(true)
      expect(logs.text).toMatch(/the revocation marker in Redis belongs to another database/)
      await second.close()
    } finally {
      await other.drop()
    }
  })
})
