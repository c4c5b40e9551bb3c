import { DEFAULT_ORG_ID } from '../../src/database.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { newId, timeOfId } from '../../src/ids.js'
import { tokenRefOf, type TokenRef } from '../../plugins/revocation/state.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { createAgent, createCredential } from '../support/management.js'
import { basicAuth, claimsOf, postForm, requestToken } from '../support/oauth.js'
import { hasRedisServer } from '../support/redis-server.js'
import { redisCli, RedisProcesses, waitFor } from '../support/redis-topology.js'

// Real Sentinel and Cluster processes on fixed ports of this file's own (7100-7199; Cluster buses on +10000).
const context = setupTestContext()

interface Client { agentId: string, clientId: string, secret: string, credentialId: string }

async function client (app: App): Promise<Client> {
  const agent = await createAgent(app, { name: 'topology client', scopes: ['weather:read'] })
  const credential = await createCredential(app, agent.id)
  return { agentId: agent.id, clientId: credential.client_id, secret: credential.client_secret, credentialId: credential.id }
}

/** A token, or undefined when the token endpoint did not issue one (its status is kept for the assertion). */
async function tryToken (app: App, who: Client): Promise<string | undefined> {
  const response = await requestToken(app, who.clientId, who.secret)
  return response.statusCode === 200 ? response.json().access_token : undefined
}

async function tokenOf (app: App, who: Client): Promise<string> {
  const response = await requestToken(app, who.clientId, who.secret)
  expect(response.statusCode, response.body).toBe(200)
  return response.json().access_token
}

async function isActive (app: App, who: Client, token: string): Promise<boolean> {
  const response = await postForm(app, '/oauth2/introspect', { token }, { authorization: basicAuth(who.clientId, who.secret) })
  expect(response.statusCode, response.body).toBe(200)
  return response.json().active
}

async function revoke (app: App, who: Client, token: string): Promise<number> {
  return (await postForm(app, '/oauth2/revoke', { token }, { authorization: basicAuth(who.clientId, who.secret) })).statusCode
}

const jtiOf = (token: string): string => claimsOf(token).jti

describe.skipIf(!hasRedisServer)('Redis Sentinel: a failover while tokens are issued and revoked', () => {
  const redis = new RedisProcesses()
  const [PRIMARY, REPLICA, SENTINEL] = [7100, 7101, 7102]
  const NAME = 'agentidp'

  beforeAll(async () => {
    await redis.server(PRIMARY)
    // replica-read-only no lets the test remove a key on the replica alone: a write the primary acknowledged
    // but never replicated before it failed (Redis replicates asynchronously).
    await redis.server(REPLICA, ['--replicaof', '127.0.0.1', String(PRIMARY), '--replica-read-only', 'no'])
    await redis.sentinel(SENTINEL, NAME, PRIMARY)
    // Sentinel learns of replicas from the primary's INFO, about every 10 s.
    await waitFor('Sentinel to know the replica', () => redisCli(SENTINEL, 'SENTINEL', 'REPLICAS', NAME).includes(String(REPLICA)), 40_000)
    await waitFor('the replica to be in sync', () => redisCli(REPLICA, 'INFO', 'replication').includes('master_link_status:up'))
  }, 60_000)
  afterAll(async () => { await redis.stopAll() })

  it('no revoked token comes back active, a lost revocation included, and issuance resumes by itself', async () => {
    const app = await context.build({ REDIS_URL: undefined, REDIS_SENTINELS: `127.0.0.1:${SENTINEL}`, REDIS_SENTINEL_NAME: NAME })
    await waitFor('the store to be trusted', () => app.revocations.trustsStore())
    const me = await client(app)

    const lost = await tokenOf(app, me)
    expect(await revoke(app, me, lost)).toBe(200)
    await waitFor('the revocation to reach the replica', () => redisCli(REPLICA, 'GET', `revoked:${jtiOf(lost)}`) === '1')
    // The primary acknowledged it; the replica that is about to be promoted never got it.
    expect(redisCli(REPLICA, 'DEL', `revoked:${jtiOf(lost)}`)).toBe('1')

    const revoked: string[] = [lost]
    const live: string[] = []
    const comeBack: string[] = []
    let running = true
    // Issues and revokes without pause through the failover; every revoked token is checked at once.
    const traffic = (async () => {
      while (running) {
        const kept = await tryToken(app, me)
        const dropped = await tryToken(app, me)
        if (kept !== undefined) live.push(kept)
        if (dropped !== undefined && await revoke(app, me, dropped) === 200) {
          revoked.push(dropped)
          if (await isActive(app, me, dropped)) comeBack.push(dropped)
        }
        if (await isActive(app, me, lost)) comeBack.push(lost)
      }
    })()

    try {
      await waitFor('some traffic before the failover', () => revoked.length > 3)
      expect(redisCli(SENTINEL, 'SENTINEL', 'FAILOVER', NAME)).toBe('OK')
      await waitFor('Sentinel to name the replica primary', () => redisCli(SENTINEL, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME).includes(String(REPLICA)))
      const revokedBefore = revoked.length
      // Issuance and revocation resume on the new primary without a restart: a revocation made now lands there.
      await waitFor('revocations to reach the new primary', () => revoked.slice(revokedBefore).some((token) => redisCli(REPLICA, 'GET', `revoked:${jtiOf(token)}`) === '1'))
      await waitFor('the store to be trusted again', () => app.revocations.trustsStore())
      // The refill from PostgreSQL restored the revocation the failover lost.
      expect(redisCli(REPLICA, 'GET', `revoked:${jtiOf(lost)}`)).toBe('1')
    } finally {
      running = false
      await traffic
    }

    expect(comeBack).toEqual([])
    for (const token of revoked) expect(await isActive(app, me, token), jtiOf(token)).toBe(false)
    for (const token of live.slice(-5)) expect(await isActive(app, me, token)).toBe(true)
    expect(await isActive(app, me, await tokenOf(app, me))).toBe(true)
    expect(app.revocations.trustsStore()).toBe(true)
  }, 90_000)

  it('a check in flight across a failover is not answered by the new primary', async () => {
    const app = await context.build({ REDIS_URL: undefined, REDIS_SENTINELS: `127.0.0.1:${SENTINEL}`, REDIS_SENTINEL_NAME: NAME })
    await waitFor('the store to be trusted', () => app.revocations.trustsStore())
    const me = await client(app)
    // Whichever node the previous test left primary, the other is promoted now.
    const primary = redisCli(SENTINEL, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME).includes(String(PRIMARY)) ? PRIMARY : REPLICA
    const promoted = primary === PRIMARY ? REPLICA : PRIMARY
    redisCli(promoted, 'CONFIG', 'SET', 'replica-read-only', 'no')
    await waitFor('the replica to be in sync', () => redisCli(promoted, 'INFO', 'replication').includes('master_link_status:up'))

    const lost = await tokenOf(app, me)
    expect(await revoke(app, me, lost)).toBe(200)
    const lostKey = `revoked:${jtiOf(lost)}`
    await waitFor('the revocation to reach the replica', () => redisCli(promoted, 'GET', lostKey) === '1')
    const oldMarker = redisCli(primary, 'GET', 'revoked:complete')

    // The check of the lost token pauses between its trust test and its read while Sentinel fails over and this
    // replica learns of it and refills the new primary; the read then lands on a new primary that lacks the lost
    // revocation yet holds the old marker, as when node-redis retries a READONLY-refused read there before the
    // remark's delete.
    const store = app.store
    const read = store.mget.bind(store)
    let paused = false
    let failedOver = false
    store.onTopologyChange(() => { failedOver = true })
    store.mget = async (keys: string[]) => {
      if (paused || !keys.includes(lostKey)) return await read(keys)
      paused = true
      expect(redisCli(SENTINEL, 'SENTINEL', 'FAILOVER', NAME)).toBe('OK')
      await waitFor('Sentinel to name the replica primary', () => redisCli(SENTINEL, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', NAME).includes(String(promoted)))
      await waitFor('this replica to learn of the failover', () => failedOver)
      await waitFor('the store to be trusted again after the refill', () => app.revocations.trustsStore())
      redisCli(promoted, 'SET', 'revoked:complete', oldMarker)
      redisCli(promoted, 'DEL', lostKey)
      return await read(keys)
    }
    try {
      expect(await isActive(app, me, lost)).toBe(false)
      expect(paused).toBe(true)
    } finally {
      store.mget = read
    }
    // The next comparison finds the old marker, refills from PostgreSQL and trusts the store again.
    await waitFor('the store to be trusted again', () => app.revocations.trustsStore() && redisCli(promoted, 'GET', lostKey) === '1')
    expect(await isActive(app, me, lost)).toBe(false)
    expect(await isActive(app, me, await tokenOf(app, me))).toBe(true)
  }, 90_000)
})

describe.skipIf(!hasRedisServer)('Redis Cluster: revocations spread over slots and nodes', () => {
  const redis = new RedisProcesses()
  const NODES = [7110, 7111, 7112]

  beforeAll(async () => {
    for (const port of NODES) await redis.clusterNode(port)
    const created = redisCli(NODES[0] as number, '--cluster', 'create', ...NODES.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes')
    expect(created).toContain('All 16384 slots covered')
    for (const port of NODES) await waitFor(`cluster state ok on ${port}`, () => redisCli(port, 'CLUSTER', 'INFO').includes('cluster_state:ok'))
  }, 60_000)
  afterAll(async () => { await redis.stopAll() })

  async function clusterApp (): Promise<App> {
    const app = await context.build({ REDIS_URL: undefined, REDIS_CLUSTER_NODES: NODES.slice(0, 2).map((port) => `127.0.0.1:${port}`).join(',') })
    await waitFor('the store to be trusted', () => app.revocations.trustsStore())
    return app
  }

  it('revoked tokens and agent and credential watermarks hold from the store, through a resharding', async () => {
    const app = await clusterApp()
    const clients = await Promise.all([1, 2, 3, 4].map(async () => await client(app)))
    const revoked: Array<[Client, string]> = []
    const live: Array<[Client, string]> = []
    for (const who of clients) {
      for (let i = 0; i < 6; i++) {
        const token = await tokenOf(app, who)
        if (i % 2 === 0) {
          expect(await revoke(app, who, token)).toBe(200)
          revoked.push([who, token])
        } else {
          live.push([who, token])
        }
      }
    }
    // Watermarks of agents and credentials, as suspension and credential revocation publish them.
    // The credential revoked is a second one of clients[1]'s agent: its first still authenticates the checks below.
    const agentMarked = clients[0] as Client
    const credentialMarked = await createCredential(app, (clients[1] as Client).agentId)
    const jti = newId()
    const before: TokenRef[] = [
      tokenRefOf(DEFAULT_ORG_ID, claimsOf(live[0]?.[1] as string) as Parameters<typeof tokenRefOf>[1]),
      { orgId: DEFAULT_ORG_ID, jti, agentId: (clients[1] as Client).agentId, credentialId: credentialMarked.id, issuedAtMs: timeOfId(jti), expiresAtMs: Date.now() + 3600_000 }
    ]
    await sleep(2)
    const atMs = Date.now()
    await ownerSql(app)`update agents set tokens_invalid_before = ${new Date(atMs)} where id = ${agentMarked.agentId}`
    await ownerSql(app)`update credentials set revoked_at = ${new Date(atMs)} where id = ${credentialMarked.id}`
    await app.revocations.publishWatermarks({ agents: [agentMarked.agentId], credentials: [credentialMarked.id], atMs })

    // The keys are spread over every master (no hash tag pins them to one).
    for (const port of NODES) expect(Number(redisCli(port, 'DBSIZE')), `keys on ${port}`).toBeGreaterThan(0)

    const check = async (): Promise<void> => {
      for (const [who, token] of revoked) expect(await isActive(app, who, token)).toBe(false)
      for (const [who, token] of live.slice(6)) expect(await isActive(app, who, token)).toBe(true)
      expect(await app.revocations.isRevoked(before[0] as TokenRef)).toBe(true)
      expect(await app.revocations.isRevoked(before[1] as TokenRef)).toBe(true)
      expect(await app.revocations.isRevoked({ ...(before[1] as TokenRef), credentialId: clients[1]?.credentialId })).toBe(false)
      expect(await app.revocations.changedSince(DEFAULT_ORG_ID, agentMarked.agentId, newId(), atMs - 1)).toBe(true)
      expect(await app.revocations.changedSince(DEFAULT_ORG_ID, clients[2]?.agentId as string, clients[2]?.credentialId as string, atMs - 1)).toBe(false)
      // Answered by the store: a CROSSSLOT refusal would have withdrawn its trust.
      expect(app.revocations.trustsStore()).toBe(true)
    }
    await check()

    // Resharding: a third of the slots move from the first master to the second, keys and all.
    const [from, to] = [redisCli(NODES[0] as number, 'CLUSTER', 'MYID'), redisCli(NODES[1] as number, 'CLUSTER', 'MYID')]
    const resharded = redisCli(NODES[0] as number, '--cluster', 'reshard', `127.0.0.1:${NODES[0] as number}`, '--cluster-from', from, '--cluster-to', to, '--cluster-slots', '2000', '--cluster-yes')
    expect(resharded).not.toMatch(/\[ERR\]/)
    for (const port of NODES) await waitFor(`cluster state ok on ${port}`, () => redisCli(port, 'CLUSTER', 'INFO').includes('cluster_state:ok'))
    await check()
    // And revocations made after it land where the slots now live.
    const who = clients[3] as Client
    const after = await tokenOf(app, who)
    expect(await revoke(app, who, after)).toBe(200)
    expect(await isActive(app, who, after)).toBe(false)
    expect(app.revocations.trustsStore()).toBe(true)
  }, 90_000)

  it('maxmemory-policy is read from every master: one that may evict makes the store unsafe', async () => {
    const app = await clusterApp()
    expect(await app.store.maxmemoryPolicy()).toBe('noeviction')
    redisCli(NODES[2] as number, 'CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru')
    try {
      expect(await app.store.maxmemoryPolicy()).toBe('allkeys-lru')
    } finally {
      redisCli(NODES[2] as number, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
    }
  })
})
