import { inOrganization, type Sql } from '../../src/database.js'
import { badRequest } from '../../src/errors.js'
import { isManagementScope, managementScopesOf } from '../../src/scopes.js'
import type { ComplianceConfig } from '../../src/config.js'
import type { AccessReviewAgent, AccessReviewFlag, AccessReviewReport } from '../../schemas/reports.js'
import { credentialCreators, lastReviews, reviewAgents, reviewCredentials, reviewDelegations, reviewSubjectTrusts, scopeGrantsSince, type GrantEventRow, type ReviewCredentialRow, type ReviewDelegationRow } from './repository.js'

const DAY_MS = 86_400_000

function groupBy<T> (rows: T[], keyOf: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>()
  for (const row of rows) {
    const group = groups.get(keyOf(row))
    if (group === undefined) groups.set(keyOf(row), [row])
    else group.push(row)
  }
  return groups
}
const iso = (date: Date | null): string | null => date === null ? null : date.toISOString()

/** The management scopes an agent.created or agent.updated event granted (held after, not before). */
function adminScopesGranted (event: GrantEventRow): string[] {
  const scopes = event.data.scopes
  if (scopes === undefined) return []
  if (Array.isArray(scopes)) return managementScopesOf(scopes)
  const before = new Set(scopes.from ?? [])
  return (scopes.to ?? []).filter((scope) => isManagementScope(scope) && !before.has(scope))
}

/**
 * The review period: from `since` (RFC 3339, not in the future) or REVIEW_STALE_DAYS ago, until now.
 */
export function reviewPeriod (since: string | undefined, config: Pick<ComplianceConfig, 'reviewStaleDays'>, now = new Date()): { since: Date, until: Date } {
  if (since === undefined) return { since: new Date(now.getTime() - config.reviewStaleDays * DAY_MS), until: now }
  const start = new Date(since)
  if (Number.isNaN(start.getTime()) || start > now) throw badRequest('since must be an RFC 3339 instant not in the future', [{ location: 'querystring/since', message: 'must be an instant not in the future' }])
  return { since: start, until: now }
}

/**
 * Every agent of the organization with its access, its credentials, its federated trusts, its last review and the
 * flags an auditor asks about (docs/devops/compliance.md defines each). Decommissioned agents are listed, unflagged:
 * they hold no access.
 */
export async function accessReview (sql: Sql, orgId: string, issuer: string, config: ComplianceConfig, period: { since: Date, until: Date }): Promise<AccessReviewReport> {
  const now = period.until
  const data = await inOrganization(sql, orgId, async (tx) => ({
    agents: await reviewAgents(tx),
    credentials: await reviewCredentials(tx),
    creators: await credentialCreators(tx),
    reviews: await lastReviews(tx),
    grants: await scopeGrantsSince(tx, period.since),
    delegations: await reviewDelegations(tx),
    subjectTrusts: await reviewSubjectTrusts(tx)
  }))
  const credentialsOf = groupBy(data.credentials, (row) => row.agent_id)
  const delegationsGranted = groupBy(data.delegations, (row) => row.agent_id)
  const delegationsReceived = groupBy(data.delegations, (row) => row.actor_id)
  const delegationOf = (row: ReviewDelegationRow): AccessReviewAgent['delegations']['granted'][number] => ({
    id: row.id, agent_id: row.agent_id, actor_id: row.actor_id, scopes: row.scopes, created_at: row.created_at.toISOString(), created_by: row.created_by, expires_at: iso(row.expires_at), live: row.live
  })
  const actsForPeople = groupBy(data.subjectTrusts.flatMap((trust) => trust.actors.map((actor) => ({ agentId: actor.agent_id, trust_id: trust.id, issuer: trust.issuer, scopes: actor.scopes }))), (entry) => entry.agentId)
  const grantedRecently = new Set(data.grants.filter((event) => adminScopesGranted(event).length > 0).map((event) => event.agent_id))
  const staleBefore = new Date(now.getTime() - config.reviewStaleDays * DAY_MS)
  const tooOldBefore = config.credentialMaxAgeDays === undefined ? undefined : new Date(now.getTime() - config.credentialMaxAgeDays * DAY_MS)

  const agents = data.agents.map((agent): AccessReviewAgent => {
    const credentials = credentialsOf.get(agent.id) ?? []
    const lastUsed = credentials.reduce<Date | null>((last, row) => row.last_used_at !== null && (last === null || row.last_used_at > last) ? row.last_used_at : last, null)
    const flags: AccessReviewFlag[] = []
    if (agent.status !== 'decommissioned') {
      if (lastUsed === null) flags.push('never_used')
      if ((lastUsed ?? agent.created_at) < staleBefore) flags.push('stale')
      if (tooOldBefore !== undefined && credentials.some((row) => row.live && row.created_at < tooOldBefore)) flags.push('credential_too_old')
      if (agent.owner === null || agent.owner.trim() === '') flags.push('no_owner')
      if (managementScopesOf(agent.scopes).length > 0) flags.push('admin_scopes')
      if (grantedRecently.has(agent.id)) flags.push('admin_granted_recently')
    }
    const review = data.reviews.get(agent.id)
    return {
      id: agent.id,
      client_id: agent.client_id,
      name: agent.name,
      status: agent.status,
      owner: agent.owner,
      scopes: agent.scopes,
      resources: agent.resources,
      created_at: agent.created_at.toISOString(),
      last_used_at: iso(lastUsed),
      flags,
      credentials: credentials.map((row) => ({
        id: row.id,
        type: row.type,
        created_at: row.created_at.toISOString(),
        created_by: data.creators.get(row.id) ?? null,
        last_used_at: iso(row.last_used_at),
        expires_at: iso(row.expires_at),
        revoked_at: iso(row.revoked_at),
        live: row.live
      })),
      federated_trusts: credentials.filter((row) => row.type === 'federated' && row.issuer !== null).map((row) => ({
        credential_id: row.id,
        issuer: row.issuer as string,
        subject: row.subject as string,
        audience: row.audience,
        claims: row.claims ?? {},
        live: row.live
      })),
      delegations: { granted: (delegationsGranted.get(agent.id) ?? []).map(delegationOf), received: (delegationsReceived.get(agent.id) ?? []).map(delegationOf) },
      acts_for_people: (actsForPeople.get(agent.id) ?? []).map(({ trust_id, issuer, scopes }) => ({ trust_id, issuer, scopes })),
      last_review: review === undefined
        ? null
        : { decision: review.data.decision ?? 'unknown', note: review.data.note ?? null, reviewer: review.actor, reviewed_at: review.occurred_at.toISOString() }
    }
  })
  return {
    generated_at: now.toISOString(),
    issuer,
    period: { since: period.since.toISOString(), until: period.until.toISOString() },
    thresholds: { review_stale_days: config.reviewStaleDays, credential_max_age_days: config.credentialMaxAgeDays ?? null },
    agents
  }
}

/** A CSV field (RFC 4180), with a leading = + - @ tab or CR made inert for spreadsheets (CWE-1236). */
function csvField (value: string | number | null): string {
  let text = value === null ? '' : String(value)
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export const ACCESS_REVIEW_CSV_COLUMNS = [
  'agent_id', 'client_id', 'name', 'status', 'owner', 'scopes', 'resources', 'created_at', 'last_used_at', 'flags',
  'live_credentials', 'credential_types', 'oldest_live_credential_created_at', 'credential_creators', 'federated_trusts',
  'last_review_decision', 'last_reviewed_at', 'last_reviewer', 'delegates_to', 'acts_for'
] as const

/** The report as CSV, one line per agent; lists inside a field are space-separated. */
export function accessReviewCsv (report: AccessReviewReport): string {
  const lines = [ACCESS_REVIEW_CSV_COLUMNS.join(',')]
  for (const agent of report.agents) {
    const live = agent.credentials.filter((credential) => credential.live)
    const oldest = live.map((credential) => credential.created_at).sort()[0] ?? null
    lines.push([
      agent.id, agent.client_id, agent.name, agent.status, agent.owner, agent.scopes.join(' '), agent.resources.join(' '),
      agent.created_at, agent.last_used_at, agent.flags.join(' '),
      live.length, [...new Set(live.map((credential) => credential.type))].join(' '), oldest,
      [...new Set(agent.credentials.map((credential) => credential.created_by).filter((actor) => actor !== null))].join(' '),
      agent.federated_trusts.filter((trust) => trust.live).map((trust) => `${trust.issuer}#${trust.subject}`).join(' '),
      agent.last_review?.decision ?? null, agent.last_review?.reviewed_at ?? null, agent.last_review?.reviewer ?? null,
      agent.delegations.granted.filter((delegation) => delegation.live).map((delegation) => delegation.actor_id).join(' '),
      [...agent.delegations.received.filter((delegation) => delegation.live).map((delegation) => delegation.agent_id), ...agent.acts_for_people.map((trust) => `people of ${trust.issuer}`)].join(' ')
    ].map(csvField).join(','))
  }
  return `${lines.join('\r\n')}\r\n`
}
