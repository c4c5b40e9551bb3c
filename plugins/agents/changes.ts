import type { FastifyInstance } from 'fastify'
import { agentChangedKey, credentialChangedKey } from '../../src/revocation-keys.js'

/** What the agents and credentials services use of the app. */
export type Deps = Pick<FastifyInstance, 'sql' | 'store' | 'audit' | 'config' | 'log'>

/**
 * Tells every replica that agents or credentials changed state (suspended, reactivated, decommissioned, revoked),
 * through the `revoked:agent:` / `revoked:credential:` keys the token endpoint and bearer auth read on each
 * request. Called after the change committed: PostgreSQL is the source of truth, so a Redis failure is logged and
 * the request still succeeds. The keys outlive any token or cached verification from before the change.
 */
export async function publishChanges (deps: Deps, changed: { agentIds?: string[], credentialIds?: string[] }): Promise<void> {
  const value = String(Date.now())
  const ttlMs = (deps.config.tokenTtlSeconds + 300) * 1000
  const entries = [
    ...(changed.agentIds ?? []).map((id) => ({ key: agentChangedKey(id), value, ttlMs })),
    ...(changed.credentialIds ?? []).map((id) => ({ key: credentialChangedKey(id), value, ttlMs }))
  ]
  if (entries.length === 0) return
  try {
    await deps.store.setMany(entries)
  } catch (error) {
    deps.log.warn({ err: { message: (error as Error).message }, agentIds: changed.agentIds, credentialIds: changed.credentialIds },
      'could not publish the change to the store; PostgreSQL holds it')
  }
}
