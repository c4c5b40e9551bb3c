import type { AuditActor } from '../../audit/public.js'
import { inOrganization } from '../../../src/database.js'
import { badMember, conflict, notFound } from '../../../src/errors.js'
import { newId } from '../../../src/ids.js'
import type { CreateDelegationBody, Delegation, DelegationList } from '../../../schemas/delegations.js'
import { findAgent } from '../agents/repository.js'
import { existingAgent } from '../agents/service.js'
import { authorize, type Caller } from '../authorization.js'
import type { Deps } from '../deps.js'
import { deleteDelegation, insertDelegation, listDelegations, type DelegationRow } from './repository.js'

function toDelegation (row: DelegationRow): Delegation {
  return {
    id: row.id,
    agent_id: row.agent_id,
    actor_id: row.actor_id,
    scopes: row.scopes,
    expires_at: row.expires_at === null ? null : row.expires_at.toISOString(),
    created_at: row.created_at.toISOString(),
    created_by: row.created_by
  }
}

/**
 * Delegations (RFC 8693 token exchange): a subject agent lets an actor agent act for it. The caller needs authority
 * over the subject (the privilege rules of authorization.ts), the subject must hold every scope delegated, and the
 * caller every management scope among them: nobody grants what they do not hold.
 */
export function delegationService (deps: Deps) {
  return {
    async create (agentId: string, body: CreateDelegationBody, actor: AuditActor, caller: Caller): Promise<Delegation> {
      const expiresAt = body.expires_at === undefined ? null : new Date(body.expires_at)
      if (expiresAt !== null && expiresAt.getTime() <= Date.now()) throw badMember('expires_at', 'must be in the future')
      if (body.actor_id === agentId) throw badMember('actor_id', 'an agent acts for itself without a delegation (a token exchange for oneself)')
      const row = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        // Shared locks: neither agent changes status, nor the subject its scopes, until the delegation is in.
        const subject = await existingAgent(tx, agentId, 'share')
        authorize(deps.config, caller, { kind: 'delegation.grant', target: subject, scopes: body.scopes })
        if (subject.status === 'decommissioned') throw conflict(`agent ${agentId} is decommissioned: it delegates nothing`)
        const outside = body.scopes.filter((scope) => !subject.scopes.includes(scope))
        if (outside.length > 0) throw badMember('scopes', `agent ${agentId} does not hold ${outside.join(' ').slice(0, 300)}: an agent delegates only scopes it holds`)
        const actorAgent = await findAgent(tx, body.actor_id, 'share')
        if (actorAgent === undefined || actorAgent.status === 'decommissioned') throw badMember('actor_id', 'no live agent with this id in the organization')
        const inserted = await insertDelegation(tx, { id: newId(), agent_id: agentId, actor_id: body.actor_id, scopes: body.scopes, expires_at: expiresAt, created_by: caller.clientId })
        if (inserted === undefined) throw conflict(`agent ${body.actor_id} already holds a delegation of agent ${agentId}: remove it first to change it`)
        await deps.audit.recordIn(tx, {
          type: 'delegation.granted',
          agentId,
          ...actor,
          data: { delegation_id: inserted.id, actor_id: inserted.actor_id, scopes: inserted.scopes, expires_at: expiresAt?.toISOString() ?? null }
        })
        return inserted
      })
      return toDelegation(row)
    },

    async list (orgId: string, agentId: string): Promise<DelegationList> {
      const rows = await inOrganization(deps.sql, orgId, async (tx) => {
        await existingAgent(tx, agentId)
        return await listDelegations(tx, agentId)
      })
      return { items: rows.map(toDelegation) }
    },

    /** Removes a delegation: no exchange for the actor from then on. */
    async remove (agentId: string, delegationId: string, actor: AuditActor, caller: Caller): Promise<void> {
      await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const subject = await existingAgent(tx, agentId, 'share')
        authorize(deps.config, caller, { kind: 'delegation.remove', target: subject })
        const row = await deleteDelegation(tx, agentId, delegationId)
        if (row === undefined) throw notFound(`agent ${agentId} has no delegation ${delegationId}`)
        await deps.audit.recordIn(tx, {
          type: 'delegation.removed',
          agentId,
          ...actor,
          data: { delegation_id: row.id, actor_id: row.actor_id, scopes: row.scopes }
        })
      })
    }
  }
}
