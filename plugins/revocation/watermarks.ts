import type { FastifyInstance } from 'fastify'


/**
 * Tells every replica that agents or credentials changed state (suspended, reactivated, decommissioned, revoked)
 * at `at`: the watermarks already committed to PostgreSQL in the caller's transaction are copied to Redis, which
 * the token endpoint, bearer auth and introspection read on each request. A Redis failure does not fail the
 * request: PostgreSQL holds the change and readers fall back to it (see state.ts).
 */
export async function publishChanges (deps: Pick<FastifyInstance, 'revocations'>, changed: { agentIds?: string[], credentialIds?: string[], orgIds?: string[] }, at: Date): Promise<void> {
  if ((changed.agentIds ?? []).length + (changed.credentialIds ?? []).length + (changed.orgIds ?? []).length === 0) return
  await deps.revocations.publishWatermarks({ agents: changed.agentIds, credentials: changed.credentialIds, organizations: changed.orgIds, atMs: at.getTime() })
}
