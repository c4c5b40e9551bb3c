import type { AuditActor, AuditEvent } from '../../audit/public.js'
import { agentDid } from '../../../src/did-web.js'
import { decodeCursor, encodeCursor } from '../../../src/cursor.js'
import { badRequest, conflict, notFound, serviceUnavailable } from '../../../src/errors.js'
import { inOrganization, type Queryable } from '../../../src/database.js'
import { newId } from '../../../src/ids.js'
import { generateClientId } from '../../../src/secrets.js'
import { monthlyUsageKey, utcMonth } from '../../tokens/public.js'
import {
  AGENT_SCOPES_MAX_LENGTH, METADATA_MAX_BYTES,
  type Agent, type AgentMetadata, type AgentPage, type CreateAgentBody, type ListAgentsQuery, type UpdateAgentBody, type Usage
} from '../../../schemas/agents.js'
import type { Review, ReviewBody } from '../../../schemas/reports.js'
import { UUID_PATTERN } from '../../../schemas/common.js'
import { revokeAllCredentials } from '../credentials/repository.js'
import { authorize, type Caller } from '../authorization.js'
import { publishChanges } from '../../revocation/public.js'
import type { Deps } from '../deps.js'
import { findAgent, insertAgent, listAgents, updateAgent, type AgentChanges, type AgentLock, type AgentRow } from './repository.js'

/** The API form of an agents row, as the issuer `issuer` shows it (its DID derives from the issuer). */
export function toAgent (row: AgentRow, issuer: string): Agent {
  return {
    id: row.id,
    client_id: row.client_id,
    did: agentDid(issuer, row.id),
    name: row.name,
    description: row.description,
    owner: row.owner,
    scopes: row.scopes,
    resources: row.resources,
    audiences: row.audiences,
    status: row.status,
    dpop_bound_access_tokens: row.dpop_bound_access_tokens,
    metadata: row.metadata,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString()
  }
}

const UUID = new RegExp(UUID_PATTERN)


function checkMetadataSize (metadata: AgentMetadata | undefined): void {
  if (metadata === undefined) return
  const bytes = Buffer.byteLength(JSON.stringify(metadata), 'utf8')
  if (bytes > METADATA_MAX_BYTES) {
    throw badRequest(`metadata is ${bytes} bytes as JSON; at most ${METADATA_MAX_BYTES} are allowed`, [{ location: 'body/metadata', message: `must be at most ${METADATA_MAX_BYTES} bytes as JSON` }])
  }
}

/** The scopes go into every token as one claim: bounded together so the largest token stays verifiable. */
function checkScopesLength (scopes: string[] | undefined): void {
  const length = scopes?.join(' ').length ?? 0
  if (length > AGENT_SCOPES_MAX_LENGTH) {
    throw badRequest(`scopes are ${length} characters together (space-separated); at most ${AGENT_SCOPES_MAX_LENGTH} are allowed`, [{ location: 'body/scopes', message: `must be at most ${AGENT_SCOPES_MAX_LENGTH} characters together` }])
  }
}

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

/** The members of the body that differ from the stored agent. */
function changesOf (current: AgentRow, body: UpdateAgentBody): AgentChanges {
  const changes: AgentChanges = {}
  if (body.name !== undefined && body.name !== current.name) changes.name = body.name
  if (body.description !== undefined && body.description !== current.description) changes.description = body.description
  if (body.owner !== undefined && body.owner !== current.owner) changes.owner = body.owner
  if (body.scopes !== undefined && !sameJson(body.scopes, current.scopes)) changes.scopes = body.scopes
  if (body.resources !== undefined && !sameJson(body.resources, current.resources)) changes.resources = body.resources
  if (body.audiences !== undefined && !sameJson(body.audiences, current.audiences)) changes.audiences = body.audiences
  if (body.dpop_bound_access_tokens !== undefined && body.dpop_bound_access_tokens !== current.dpop_bound_access_tokens) changes.dpop_bound_access_tokens = body.dpop_bound_access_tokens
  if (body.metadata !== undefined && !sameJson(body.metadata, current.metadata)) changes.metadata = body.metadata
  if (body.status !== undefined && body.status !== current.status) changes.status = body.status
  return changes
}

/** The audit events of an agent update: agent.updated for the fields, agent.suspended/reactivated for the status. */
export function updateEvents (before: AgentRow, changes: AgentChanges, actor: AuditActor): AuditEvent[] {
  const events: AuditEvent[] = []
  const fields = Object.keys(changes).filter((field) => field !== 'status')
  if (fields.length > 0) {
    const data: Record<string, unknown> = { fields }
    // Values that decide what the agent may do are kept; free text and metadata are named only.
    for (const field of ['name', 'owner', 'scopes', 'resources', 'audiences', 'dpop_bound_access_tokens'] as const) {
      if (changes[field] !== undefined) data[field] = { from: before[field], to: changes[field] }
    }
    events.push({ type: 'agent.updated', agentId: before.id, ...actor, data })
  }
  if (changes.status !== undefined) {
    events.push({
      type: changes.status === 'suspended' ? 'agent.suspended' : 'agent.reactivated',
      agentId: before.id,
      ...actor,
      data: { from: before.status, to: changes.status }
    })
  }
  return events
}

/** The agent with this id, locked as findAgent does when `lock` is given; a 404 when there is none. */
export async function existingAgent (sql: Queryable, id: string, lock?: AgentLock): Promise<AgentRow> {
  const row = await findAgent(sql, id, lock)
  if (row === undefined) throw notFound(`no agent ${id}`)
  return row
}

/** Agents: registration, listing, changes, suspension and decommissioning, usage. */
export function agentService (deps: Deps) {
  return {
    /** Registers an active agent with a new client_id; it holds no credential yet. Management scopes: see authorize. */
    async create (body: CreateAgentBody, actor: AuditActor, caller: Caller, issuer: string): Promise<Agent> {
      checkMetadataSize(body.metadata)
      checkScopesLength(body.scopes)
      // REQUIRE_AGENT_OWNER: every agent has a sponsor, someone an access review can ask (as Entra requires).
      if (deps.config.compliance.requireAgentOwner && (body.owner ?? '').trim() === '') {
        throw badRequest('owner is required: REQUIRE_AGENT_OWNER is set, so every agent names who is responsible for it', [{ location: 'body/owner', message: 'is required' }])
      }
      authorize(deps.config, caller, { kind: 'agent.create', scopes: body.scopes ?? [] })
      const row = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const row = await insertAgent(tx, {
          id: newId(),
          client_id: generateClientId(),
          name: body.name,
          description: body.description ?? null,
          owner: body.owner ?? null,
          scopes: body.scopes ?? [],
          resources: body.resources ?? [],
          audiences: body.audiences ?? [],
          dpop_bound_access_tokens: body.dpop_bound_access_tokens ?? false,
          metadata: body.metadata ?? {}
        })
        await deps.audit.recordIn(tx, {
          type: 'agent.created',
          agentId: row.id,
          ...actor,
          data: { client_id: row.client_id, name: row.name, owner: row.owner, scopes: row.scopes, resources: row.resources, audiences: row.audiences, dpop_bound_access_tokens: row.dpop_bound_access_tokens }
        })
        return row
      })
      return toAgent(row, issuer)
    },

    /** One page in creation order: each agent exactly once across pages, whatever is created meanwhile. */
    async list (orgId: string, query: ListAgentsQuery, issuer: string): Promise<AgentPage> {
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, UUID)
      const rows = await inOrganization(deps.sql, orgId, async (tx) => await listAgents(tx, { status: query.status, owner: query.owner, clientId: query.client_id, after, limit: query.limit + 1 }))
      const items = rows.slice(0, query.limit)
      const last = items.at(-1)
      return { items: items.map((row) => toAgent(row, issuer)), next_cursor: rows.length > query.limit && last !== undefined ? encodeCursor(last.id) : null }
    },

    async get (orgId: string, id: string, issuer: string): Promise<Agent> {
      return toAgent(await inOrganization(deps.sql, orgId, async (tx) => await existingAgent(tx, id)), issuer)
    },

    /**
     * Changes the members given. active ⇄ suspended takes effect on every replica at once; a decommissioned
     * agent is read-only (409), so its record stays as it was when it was retired. The caller's authority over the
     * agent and over the scopes it grants is checked under the row lock (see authorize).
     */
    async update (id: string, body: UpdateAgentBody, actor: AuditActor, caller: Caller, issuer: string): Promise<Agent> {
      // Unknown members are dropped by validation; a body left with none was most likely a typo, not a no-op.
      if (Object.keys(body).length === 0) throw badRequest('the body names no member to change', [{ location: 'body', message: 'must name at least one of name, description, owner, scopes, resources, audiences, dpop_bound_access_tokens, metadata, status' }])
      checkMetadataSize(body.metadata)
      checkScopesLength(body.scopes)
      const at = new Date()
      const { after, changes, narrowed } = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const current = await existingAgent(tx, id, 'update')
        if (current.status === 'decommissioned') throw conflict(`agent ${id} is decommissioned: its record is read-only and it can never be reactivated`)
        const changes = changesOf(current, body)
        authorize(deps.config, caller, { kind: 'agent.update', target: current, changes })
        // Tokens carrying a scope or resource the agent lost die with it (and cached client verifications re-read
        // them). Tokens name what they carry, but the watermark is per agent: all of its earlier tokens die.
        // Requiring DPoP narrows too: the agent's Bearer tokens issued before die, so none outlives the requirement.
        const narrowed = (changes.scopes !== undefined && current.scopes.some((scope) => !changes.scopes?.includes(scope))) ||
          (changes.resources !== undefined && current.resources.some((resource) => !changes.resources?.includes(resource))) ||
          changes.dpop_bound_access_tokens === true
        const after = Object.keys(changes).length === 0 ? current : await updateAgent(tx, id, changes, at, narrowed)
        await deps.audit.recordIn(tx, ...updateEvents(current, changes, actor))
        return { after, changes, narrowed }
      })
      if (changes.status !== undefined || narrowed) await publishChanges(deps, { agentIds: [id] }, at)
      return toAgent(after, issuer)
    },

    /**
     * Decommissions: status decommissioned and every credential revoked in one transaction, the record kept.
     * Idempotent: decommissioning a decommissioned agent changes nothing. The bootstrap admin is refused (409).
     */
    async decommission (id: string, actor: AuditActor, caller: Caller): Promise<void> {
      const at = new Date()
      const outcome = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const current = await existingAgent(tx, id, 'update')
        authorize(deps.config, caller, { kind: 'agent.decommission', target: current })
        if (current.status === 'decommissioned') return undefined
        const revoked = await revokeAllCredentials(tx, id, at)
        await updateAgent(tx, id, { status: 'decommissioned' }, at)
        await deps.audit.recordIn(tx,
          { type: 'agent.decommissioned', agentId: id, ...actor, data: { from: current.status, revoked_credentials: revoked } },
          ...revoked.map((credentialId): AuditEvent => ({ type: 'credential.revoked', agentId: id, ...actor, data: { credential_id: credentialId, reason: 'agent_decommissioned' } }))
        )
        return { revoked }
      })
      if (outcome === undefined) return
      await publishChanges(deps, { agentIds: [id], credentialIds: outcome.revoked }, at)
    },

    /**
     * Records an access-review decision as agent.reviewed. revoke suspends the agent as a PATCH to suspended would
     * (its tokens die on every replica), under the same privilege rules: a reviewer suspends only agents whose
     * management scopes it holds, never the bootstrap admin. An agent not active stays as it is. Returns the event's data.
     */
    async review (body: ReviewBody, actor: AuditActor, caller: Caller): Promise<Review> {
      const at = new Date()
      const { review, suspended } = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const current = await existingAgent(tx, body.agent_id, 'update')
        const suspend = body.decision === 'revoke' && current.status === 'active'
        const changes: AgentChanges = suspend ? { status: 'suspended' } : {}
        if (body.decision === 'revoke') authorize(deps.config, caller, { kind: 'agent.update', target: current, changes })
        if (suspend) await updateAgent(tx, current.id, changes, at)
        const review: Review = {
          agent_id: current.id,
          decision: body.decision,
          note: body.note ?? null,
          reviewer: caller.clientId,
          reviewed_at: at.toISOString(),
          status: suspend ? 'suspended' : current.status
        }
        await deps.audit.recordIn(tx,
          { type: 'agent.reviewed', agentId: current.id, ...actor, data: { decision: review.decision, note: review.note, status_before: current.status, status_after: review.status } },
          ...updateEvents(current, changes, actor))
        return { review, suspended: suspend }
      })
      if (suspended) await publishChanges(deps, { agentIds: [body.agent_id] }, at)
      return review
    },

    /**
     * Tokens issued to the agent in a UTC month, from the counter the token endpoint keeps in the store.
     * The counter lives only there, so when the store fails this is a 503 with Retry-After, never a guess.
     */
    async usage (orgId: string, id: string, month: string = utcMonth()): Promise<Usage> {
      await inOrganization(deps.sql, orgId, async (tx) => await existingAgent(tx, id))
      let count: string | null
      try {
        count = await deps.store.get(monthlyUsageKey(id, month))
      } catch (error) {
        deps.log.warn({ err: { message: (error as Error).message }, agentId: id }, 'usage counter unavailable')
        throw serviceUnavailable('usage counters are unavailable right now, retry shortly')
      }
      return { agent_id: id, month, tokens_issued: count === null ? 0 : Number(count) }
    }
  }
}

export type AgentService = ReturnType<typeof agentService>
