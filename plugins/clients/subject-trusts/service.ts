import type { AuditActor } from '../../audit/public.js'
import { inOrganization } from '../../../src/database.js'
import { badMember, notFound } from '../../../src/errors.js'
import { newId } from '../../../src/ids.js'
import { managementScopesOf } from '../../../src/scopes.js'
import type { CreateCredentialBody } from '../../../schemas/credentials.js'
import type { CreateSubjectTrustBody, SubjectTrust, SubjectTrustList } from '../../../schemas/subject-trusts.js'
import { findAgent } from '../agents/repository.js'
import { authorize, type Caller } from '../authorization.js'
import { federationRuleOf } from '../credentials/federated.js'
import type { Deps } from '../deps.js'
import { deleteSubjectTrust, insertSubjectTrust, listSubjectTrusts, type SubjectTrustRow } from './repository.js'

function toSubjectTrust (row: SubjectTrustRow): SubjectTrust {
  return {
    id: row.id,
    issuer: row.issuer,
    audience: row.audience,
    claims: row.claims,
    jwks_uri: row.jwks_uri,
    jwks: row.jwks,
    subject_id: row.subject_id,
    actors: row.actors,
    created_at: row.created_at.toISOString(),
    created_by: row.created_by
  }
}

/**
 * Subject trusts: an external issuer whose tokens name people, and the agents that may act for them by token
 * exchange. Its rule (issuer, audience, claims, keys) is checked as a federated credential's; each actor must be a
 * live agent the caller has authority over, and its scopes application scopes the agent holds: a person's token never
 * carries this server's management authority.
 */
export function subjectTrustService (deps: Deps) {
  return {
    async create (body: CreateSubjectTrustBody, actor: AuditActor, caller: Caller): Promise<SubjectTrust> {
      // The rule of a federated credential, whatever the subject: a trust of people matches every subject of its issuer.
      const rule = await federationRuleOf({ ...body, type: 'federated', subject: '*' } as CreateCredentialBody, deps.config.federationAllowPrivateNetworks)
      const ids = body.actors.map((entry) => entry.agent_id)
      if (new Set(ids).size !== ids.length) throw badMember('actors', 'names an agent twice')
      const row = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        for (const [index, entry] of body.actors.entries()) {
          const agent = await findAgent(tx, entry.agent_id, 'share')
          if (agent === undefined || agent.status === 'decommissioned') throw badMember(`actors/${index}/agent_id`, 'no live agent with this id in the organization')
          authorize(deps.config, caller, { kind: 'delegation.grant', target: agent, scopes: entry.scopes })
          const management = managementScopesOf(entry.scopes)
          if (management.length > 0) throw badMember(`actors/${index}/scopes`, `${management.join(' ')}: an agent acting for a person carries application scopes only`)
          const outside = entry.scopes.filter((scope) => !agent.scopes.includes(scope))
          if (outside.length > 0) throw badMember(`actors/${index}/scopes`, `agent ${agent.id} does not hold ${outside.join(' ').slice(0, 300)}`)
        }
        const inserted = await insertSubjectTrust(tx, {
          id: newId(),
          issuer: rule.issuer,
          audience: rule.audience,
          claims: rule.claims,
          jwks: rule.jwks,
          jwks_uri: rule.jwks_uri,
          subject_id: body.subject_id ?? 'issuer_sub',
          actors: body.actors,
          created_by: caller.clientId
        })
        await deps.audit.recordIn(tx, {
          type: 'subject_trust.created',
          ...actor,
          data: { trust_id: inserted.id, issuer: inserted.issuer, audience: inserted.audience, claims: inserted.claims, subject_id: inserted.subject_id, actors: inserted.actors, jwks_uri: inserted.jwks_uri, jwks_inline: inserted.jwks !== null }
        })
        return inserted
      })
      return toSubjectTrust(row)
    },

    async list (orgId: string): Promise<SubjectTrustList> {
      return { items: (await inOrganization(deps.sql, orgId, async (tx) => await listSubjectTrusts(tx))).map(toSubjectTrust) }
    },

    /** Deletes a trust: no exchange for its issuer's subjects from then on. */
    async remove (id: string, actor: AuditActor, caller: Caller): Promise<void> {
      await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const row = await deleteSubjectTrust(tx, id)
        if (row === undefined) throw notFound(`no subject trust ${id}`)
        for (const entry of row.actors) {
          const agent = await findAgent(tx, entry.agent_id)
          if (agent !== undefined) authorize(deps.config, caller, { kind: 'delegation.remove', target: agent })
        }
        await deps.audit.recordIn(tx, { type: 'subject_trust.deleted', ...actor, data: { trust_id: row.id, issuer: row.issuer } })
      })
    }
  }
}
