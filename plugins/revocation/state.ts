import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import { DEFAULT_ORG_ID, inOrganization, type Queryable, type Sql } from '../../src/database.js'
import { isAgentId, timeOfId } from '../../src/ids.js'
import { agentChangedKey, credentialChangedKey, organizationChangedKey, revokedTokenKey } from './keys.js'

/** What the revocation checks need to know of an access token. */
export interface TokenRef {
  /** The organization of the issuer that issued it (and verified it). */
  orgId: string
  jti: string
  /** The agent (sub). */
  agentId: string
  /** The credential it was issued against, when the token names one. */
  credentialId?: string
  /** Issue time at millisecond precision (from the UUIDv7 jti). */
  issuedAtMs: number
  expiresAtMs: number
  /**
   * What a token obtained by token exchange (RFC 8693) rests on, besides its own jti, agent and credential: the
   * tokens it was exchanged from (their jtis and credentials) and the agents that acted (its `act` chain). Any of them
   * revoked, suspended or changed after the token was issued kills it: a few more keys in the same read, never a scan.
   */
  restsOn?: { jtis: string[], agentIds: string[], credentialIds: string[] }
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/**
 * What the revocation checks need of verified access token claims. Our jtis are UUIDv7s, so the issue time is
 * known to the millisecond; for anything else the second of `iat` is all there is.
 */
/** When a token was issued: to the millisecond from our UUIDv7 jti, else the second of iat. */
export function issuedAtMsOf (claims: { jti: string, iat: number }): number {
  return UUID_V7.test(claims.jti) ? timeOfId(claims.jti) : claims.iat * 1000
}

const isCredentialId = (value: unknown): value is string => typeof value === 'string' && UUID_V7.test(value)

/** The agent ids of an `act` chain (RFC 8693 §4.1), newest first: each nested actor's sub that is one of ours. */
function actorIdsOf (act: unknown): string[] {
  const ids: string[] = []
  for (let actor = act; actor !== null && typeof actor === 'object'; actor = (actor as { act?: unknown }).act) {
    const sub = (actor as { sub?: unknown }).sub
    if (isAgentId(sub)) ids.push(sub)
  }
  return ids
}

/** The tokens an exchanged token was exchanged from, as its `rests_on` claim lists them. */
function ancestorsOf (restsOn: unknown): Array<{ jti: string, credential_id?: string }> {
  if (!Array.isArray(restsOn)) return []
  return restsOn.filter((entry): entry is { jti: string, credential_id?: string } => entry !== null && typeof entry === 'object' && typeof entry.jti === 'string')
}

/** What the revocation checks need of verified access token claims (`act` and `rests_on` for an exchanged token). */
export function tokenRefOf (orgId: string, claims: { jti: string, sub: string, iat: number, exp: number, credential_id?: unknown, act?: unknown, rests_on?: unknown }): TokenRef {
  const actors = actorIdsOf(claims.act)
  const ref: TokenRef = {
    orgId,
    jti: claims.jti,
    // A token an agent holds for a person (sub not an agent id) stands or falls with that agent, the outermost actor.
    agentId: isAgentId(claims.sub) ? claims.sub : actors[0] ?? claims.sub,
    credentialId: isCredentialId(claims.credential_id) ? claims.credential_id : undefined,
    issuedAtMs: issuedAtMsOf(claims),
    expiresAtMs: claims.exp * 1000
  }
  const ancestors = ancestorsOf(claims.rests_on)
  if (ancestors.length > 0 || actors.length > 0) {
    ref.restsOn = {
      jtis: ancestors.map((ancestor) => ancestor.jti),
      agentIds: actors,
      credentialIds: ancestors.map((ancestor) => ancestor.credential_id).filter(isCredentialId)
    }
  }
  return ref
}

/** Every jti, agent and credential whose revocation kills the token, each once. */
function dependenciesOf (token: TokenRef): { jtis: string[], agentIds: string[], credentialIds: string[] } {
  const extra = token.restsOn
  // Most tokens were not exchanged: their own jti, agent and credential, with no sets to build on every check.
  if (extra === undefined) {
    return { jtis: [token.jti], agentIds: isAgentId(token.agentId) ? [token.agentId] : [], credentialIds: token.credentialId === undefined ? [] : [token.credentialId] }
  }
  return {
    jtis: [...new Set([token.jti, ...extra?.jtis ?? []])],
    agentIds: [...new Set([token.agentId, ...extra?.agentIds ?? []])].filter(isAgentId),
    credentialIds: [...new Set([...token.credentialId === undefined ? [] : [token.credentialId], ...extra?.credentialIds ?? []])]
  }
}

/**
 * The revocation state, kept in two stores: PostgreSQL is durable and complete; Redis is fast. Revoking a token
 * writes `revoked:{jti}`; suspending/reactivating/decommissioning an agent or revoking a credential writes a
 * "not before" watermark (epoch ms) that kills every token issued up to that instant, without enumerating jtis.
 * `revoked:complete` says Redis holds the whole set of this database (its value names the database and its sync
 * epoch); when it is gone (FLUSHALL, a restart without persistence) or names another database, answers come from
 * PostgreSQL while Redis is refilled. Redis is never trusted under a maxmemory-policy that may evict keys.
 */
export interface RevocationState {
  /** Whether the token is revoked: by its jti, or by a watermark of its agent or credential at or after its issue. */
  isRevoked(token: TokenRef): Promise<boolean>
  /** Whether a watermark of the agent or the credential is newer than `sinceMs` (cached verifications must re-check). */
  changedSince(orgId: string, agentId: string, credentialId: string, sinceMs: number): Promise<boolean>
  /**
   * Revokes one token in both stores. Idempotent. `recordIn` runs inside the PostgreSQL transaction of a first
   * revocation (its audit event commits with it); Redis is written after the commit.
   */
  revokeToken(token: TokenRef, reason: string, recordIn?: (tx: Queryable) => Promise<void>): Promise<void>
  /**
   * Publishes watermarks to Redis after the caller's transaction committed them to PostgreSQL
   * (agents.tokens_invalid_before, credentials.revoked_at). A Redis failure is logged, not thrown: PostgreSQL
   * is the source of truth and the completeness marker is dropped so readers fall back to it.
   */
  publishWatermarks(marks: { agents?: string[], credentials?: string[], organizations?: string[], atMs: number }): Promise<void>
  /** Deletes PostgreSQL rows of tokens that have expired anyway. Returns how many. */
  prune(): Promise<number>
  /** Compares Redis's marker with PostgreSQL now (each replica also does so every second); refills Redis when they differ. */
  sync(): Promise<void>
  /** Whether answers come from Redis right now (else from PostgreSQL). */
  trustsStore(): boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    revocations: RevocationState
  }
}

export const COMPLETE_MARKER_KEY = 'revoked:complete'

/**
 * Set when a refill starts, one a refill; the marker is set only if it is still there at the end. A FLUSHALL or an
 * empty restart of Redis in the middle of a refill removes it with what was copied before, so the marker never
 * vouches for a copy that lost part of itself. Its hash tag is the marker's key: in a Cluster both are on one slot.
 */
export const refillFenceKey = (refillId: string): string => `revoked:refill:{${COMPLETE_MARKER_KEY}}:${refillId}`
// A fence outlives any refill; one left by a replica that died mid-refill expires by itself.
const REFILL_FENCE_TTL_MS = 3600_000

// How often each replica compares PostgreSQL's sync epoch with Redis's marker.
const SYNC_CHECK_INTERVAL_MS = 1000
// How often each replica deletes revocation rows of tokens that have expired anyway (cheap: indexed on expires_at).
const PRUNE_INTERVAL_MS = 10 * 60_000

interface DurableState {
  jti_revoked: boolean
  agent_mark: Date | null
  credential_mark: Date | null
  organization_mark: Date | null
}

/** The revocation state of one token (and of what it rests on), from PostgreSQL alone: the latest watermarks. */
async function durableStateOf (sql: Sql, token: TokenRef): Promise<DurableState> {
  const { jtis, agentIds, credentialIds } = dependenciesOf(token)
  const [row] = await inOrganization(sql, token.orgId, async (tx) => await tx<DurableState[]>`
    select
      exists (select 1 from token_revocations where jti = any (${tx.array(jtis)}::text[])) as jti_revoked,
      (select max(tokens_invalid_before) from agents where id = any (${tx.array(agentIds)}::uuid[])) as agent_mark,
      (select max(revoked_at) from credentials where id = any (${tx.array(credentialIds)}::uuid[])) as credential_mark,
      (select tokens_invalid_before from organizations where id = current_org_id()) as organization_mark`)
  return row as DurableState
}

/** The ids of every organization: background work visits each in a transaction of its own (inOrganization). */
async function organizationIds (sql: Sql): Promise<string[]> {
  return (await sql<Array<{ id: string }>>`select id from organizations where status <> 'deleted' order by id`).map((row) => row.id)
}

/** A watermark kills tokens issued at or before it (at equal milliseconds, refusing is the safe side). */
function killedBy (markMs: number | null | undefined, issuedAtMs: number): boolean {
  return markMs !== null && markMs !== undefined && issuedAtMs <= markMs
}

const msOf = (value: string | null): number | null => (value === null ? null : Number(value))

export default fp(async (app) => {
  const { sql, store, config, log, storeKeepsKeys } = app
  // Watermarks must outlive every token issued before them (and every cached verification).
  const watermarkTtlMs = (config.tokenTtlSeconds + 300) * 1000
  let refilling: Promise<void> | undefined
  // Redis answers for revocation only after this replica saw its marker agree with PostgreSQL's, and only while
  // Redis keeps every key (maxmemory-policy noeviction); any Redis error withdraws that trust until the next
  // successful comparison.
  let trusted = false
  const trustsStore = (): boolean => trusted && storeKeepsKeys()
  let foreignMarkerLogged = false
  // Counts topology changes: a comparison begun before one must not restore trust after it.
  let topologyGeneration = 0
  // The topology generation whose epoch bump has landed in PostgreSQL: until it is the current one, no comparison
  // may trust the marker (the bump is retried by each comparison).
  let remarkedGeneration = 0
  let remarking: Promise<void> | undefined

  /** Bumps the sync epoch once for the current topology generation (one attempt at a time). */
  async function remark (): Promise<void> {
    const generation = topologyGeneration
    remarking ??= markRedisIncomplete()
      .then(() => { remarkedGeneration = Math.max(remarkedGeneration, generation) })
      .catch((error: Error) => { log.warn({ err: { message: error.message } }, 'could not mark the store incomplete after a failover') })
      .finally(() => { remarking = undefined })
    await remarking
  }

  /** The marker of this database's current sync epoch: `<database id>:<epoch>`. */
  async function expectedMarker (): Promise<string> {
    const [row] = await sql<Array<{ marker: string }>>`select database_id::text || ':' || epoch::text as marker from revocation_sync`
    if (row === undefined) throw new Error('revocation_sync holds no row: run the migrations')
    return row.marker
  }

  /** A revocation reached PostgreSQL but not Redis: make every replica distrust Redis until it is refilled. */
  async function markRedisIncomplete (): Promise<void> {
    trusted = false
    await sql`update revocation_sync set epoch = epoch + 1`
    await store.del(COMPLETE_MARKER_KEY).catch(() => {})
  }

  /** Copies the live revocation state from PostgreSQL into Redis, then sets the completeness marker. */
  async function refill (): Promise<void> {
    const fence = refillFenceKey(randomUUID())
    await store.set(fence, '1', REFILL_FENCE_TTL_MS)
    const marker = await expectedMarker()
    const horizon = new Date(Date.now() - watermarkTtlMs)
    const now = Date.now()
    let copied = 0
    type Entry = Array<{ key: string, value: string, expires_ms: string }>
    const copy = async (rows: Entry): Promise<void> => {
      await store.setMany(rows.map((row) => ({ key: row.key, value: row.value, ttlMs: Math.max(1, Number(row.expires_ms) - now) })))
      copied += rows.length
    }
    // The keys are built here in SQL as plugins/revocation/keys.ts builds them.
    await copy(await sql<Entry>`
      select 'revoked:org:' || id as key, (extract(epoch from tokens_invalid_before) * 1000)::bigint::text as value,
             (extract(epoch from tokens_invalid_before) * 1000 + ${watermarkTtlMs})::bigint::text as expires_ms
        from organizations where tokens_invalid_before > ${horizon}`)
    for (const orgId of await organizationIds(sql)) {
      await inOrganization(sql, orgId, async (tx) => {
        const cursor = tx<Entry>`
          select 'revoked:' || jti as key, '1' as value, (extract(epoch from expires_at) * 1000)::bigint::text as expires_ms
            from token_revocations where expires_at > now()
          union all
          select 'revoked:agent:' || id, (extract(epoch from tokens_invalid_before) * 1000)::bigint::text,
                 (extract(epoch from tokens_invalid_before) * 1000 + ${watermarkTtlMs})::bigint::text
            from agents where tokens_invalid_before > ${horizon}
          union all
          select 'revoked:credential:' || id, (extract(epoch from revoked_at) * 1000)::bigint::text,
                 (extract(epoch from revoked_at) * 1000 + ${watermarkTtlMs})::bigint::text
            from credentials where revoked_at > ${horizon}`.cursor(5000)
        for await (const rows of cursor) await copy(rows)
      })
    }
    if (!await store.setIfFenced(fence, COMPLETE_MARKER_KEY, marker)) {
      // The next comparison (within a second) finds the marker missing and starts another refill.
      log.warn('the store lost keys during the refill of the revocation state (flushed or restarted); refilling again')
      return
    }
    log.info({ entries: copied }, 'revocation state copied from PostgreSQL to the store')
  }

  /** Trusts Redis when its marker names this database and its current sync epoch; otherwise starts a refill. */
  async function checkSync (): Promise<void> {
    if (remarkedGeneration !== topologyGeneration) await remark()
    const generation = topologyGeneration
    if (remarkedGeneration !== generation) {
      trusted = false
      return
    }
    try {
      const [marker, expected] = await Promise.all([store.get(COMPLETE_MARKER_KEY), expectedMarker()])
      if (generation !== topologyGeneration) return
      trusted = marker === expected
      if (!trusted && marker?.includes(':') === true && !foreignMarkerLogged && marker.split(':')[0] !== expected.split(':')[0]) {
        // Each side's refill overwrites the other's marker: neither trusts Redis for long, but both pay for it.
        foreignMarkerLogged = true
        log.warn('the revocation marker in Redis belongs to another database: give each database its own Redis (or db number)')
      }
      if (!trusted) startRefill()
    } catch {
      trusted = false
    }
  }

  /** Starts one refill at a time, in the background; requests meanwhile answer from PostgreSQL. */
  function startRefill (): void {
    if (refilling !== undefined) return
    refilling = refill()
      .catch((error: Error) => { log.warn({ err: { message: error.message } }, 'could not refill the revocation state; answering from PostgreSQL') })
      .finally(() => { refilling = undefined })
  }

  // After a failover the new primary may lack the last revocations the old one acknowledged (replication is
  // asynchronous) while still holding the marker: distrust it and refill it from PostgreSQL, every replica alike.
  store.onTopologyChange(() => {
    topologyGeneration += 1
    trusted = false
    log.warn('the Redis topology changed (failover); answering revocations from PostgreSQL until the store is refilled')
    void remark()
  })

  /**
   * Whether a read begun at `generation` may be believed: no failover was learned of and nothing withdrew the
   * trust while it ran. node-redis retries a read the demoted primary refused (READONLY) on the new primary once it
   * has learned of the failover, so the answer of a read that was in flight across one may come from a primary
   * that lacks what the failover lost yet still holds the old marker (until the remark deletes it).
   */
  function answeredByTrustedStore (generation: number): boolean {
    return generation === topologyGeneration && trusted
  }

  await checkSync()
  const syncTimer = setInterval(() => { void checkSync() }, SYNC_CHECK_INTERVAL_MS)
  syncTimer.unref()
  const pruneTimer = setInterval(() => {
    revocations.prune().catch((error: Error) => { log.warn({ err: { message: error.message } }, 'pruning expired revocations failed') })
  }, PRUNE_INTERVAL_MS)
  pruneTimer.unref()
  app.addHook('onClose', async () => {
    clearInterval(syncTimer)
    clearInterval(pruneTimer)
    await refilling
  })

  const revocations: RevocationState = {
    async isRevoked (token) {
      const { jtis, agentIds, credentialIds } = dependenciesOf(token)
      // One read, whatever the token rests on: the marker, each jti, each agent's and credential's watermark, and
      // (the default organization is never suspended) the organization's.
      const keys = [COMPLETE_MARKER_KEY, ...jtis.map(revokedTokenKey), ...agentIds.map(agentChangedKey), ...credentialIds.map(credentialChangedKey)]
      if (token.orgId !== DEFAULT_ORG_ID) keys.push(organizationChangedKey(token.orgId))
      if (trustsStore()) {
        const generation = topologyGeneration
        try {
          const [complete, ...values] = await store.mget(keys)
          if (answeredByTrustedStore(generation)) {
            if (complete !== null) {
              const revokedJti = values.slice(0, jtis.length).some((value) => value !== null)
              return revokedJti || values.slice(jtis.length).some((mark) => killedBy(msOf(mark ?? null), token.issuedAtMs))
            }
            trusted = false
            startRefill()
          }
        } catch {
          // Redis is down: PostgreSQL answers below.
          trusted = false
        }
      }
      const durable = await durableStateOf(sql, token)
      return durable.jti_revoked || killedBy(durable.agent_mark?.getTime(), token.issuedAtMs) || killedBy(durable.credential_mark?.getTime(), token.issuedAtMs) ||
        killedBy(durable.organization_mark?.getTime(), token.issuedAtMs)
    },

    async changedSince (orgId, agentId, credentialId, sinceMs) {
      if (!trustsStore()) return true
      const generation = topologyGeneration
      try {
        const keys = [COMPLETE_MARKER_KEY, agentChangedKey(agentId), credentialChangedKey(credentialId)]
        if (orgId !== DEFAULT_ORG_ID) keys.push(organizationChangedKey(orgId))
        const [complete, agentMark, credentialMark, organizationMark] = await store.mget(keys)
        if (!answeredByTrustedStore(generation)) return true
        if (complete !== null) return killedBy(msOf(agentMark ?? null), sinceMs) || killedBy(msOf(credentialMark ?? null), sinceMs) || killedBy(msOf(organizationMark ?? null), sinceMs)
        trusted = false
        startRefill()
      } catch {
        trusted = false
      }
      return true
    },

    async revokeToken (token, reason, recordIn) {
      const ttlMs = token.expiresAtMs - Date.now()
      if (ttlMs <= 0) return
      await inOrganization(sql, token.orgId, async (tx) => {
        const inserted = await tx`
          insert into token_revocations (jti, agent_id, expires_at, reason)
          values (${token.jti}, ${token.agentId}, ${new Date(token.expiresAtMs)}, ${reason})
          on conflict (jti) do nothing`
        // A concurrent revocation of the same token got there first: it records the event.
        if (inserted.count === 1) await recordIn?.(tx)
      })
      try {
        await store.set(revokedTokenKey(token.jti), '1', ttlMs)
      } catch (error) {
        log.warn({ err: { message: (error as Error).message } }, 'revocation stored in PostgreSQL only; Redis unavailable')
        await markRedisIncomplete()
      }
    },

    async publishWatermarks ({ agents = [], credentials = [], organizations = [], atMs }) {
      const entries = [
        ...organizations.map((id) => ({ key: organizationChangedKey(id), value: String(atMs), ttlMs: watermarkTtlMs })),
        ...agents.map((id) => ({ key: agentChangedKey(id), value: String(atMs), ttlMs: watermarkTtlMs })),
        ...credentials.map((id) => ({ key: credentialChangedKey(id), value: String(atMs), ttlMs: watermarkTtlMs }))
      ]
      try {
        await store.setMany(entries)
      } catch (error) {
        log.warn({ err: { message: (error as Error).message }, agents, credentials }, 'watermark stored in PostgreSQL only; Redis unavailable')
        await markRedisIncomplete()
      }
    },

    async prune () {
      let deleted = 0
      for (const orgId of await organizationIds(sql)) {
        deleted += (await inOrganization(sql, orgId, async (tx) => await tx`delete from token_revocations where expires_at < now()`)).count
      }
      return deleted
    },

    sync: checkSync,
    trustsStore
  }

  app.decorate('revocations', revocations)
}, { name: 'revocations', dependencies: ['postgres', 'redis', 'config'] })
