import type { AuditActor, AuditEvent } from '../audit/public.js'
import { DEFAULT_ORG_ID, inOrganization, type Queryable } from '../../src/database.js'
import { newId } from '../../src/ids.js'
import { ADMIN_SCOPES, AdminScope } from '../../src/scopes.js'
import { generateClientId, generateClientSecret, hashSecret, verifySecret } from '../../src/secrets.js'
import { insertCredential, liveCredentialsWithHash, markBootstrapCredential, revokeCredential } from './credentials/repository.js'
import { publishChanges } from '../revocation/public.js'
import type { Deps } from './deps.js'
import { anyLiveAgentHolds, findAgentByClientId, insertAgent, updateAgent, type AgentChanges, type AgentRow } from './agents/repository.js'
import { updateEvents } from './agents/service.js'

// Serializes bootstrap across replicas that start together; any constant shared by every replica works.
const BOOTSTRAP_LOCK_KEY = 2_718_281_828

// The bootstrap admin is the default organization's (and the platform's): an organization's first admin is made
// when the organization is (plugins/organizations).
const BOOTSTRAP_ACTOR: AuditActor = { orgId: DEFAULT_ORG_ID, actor: 'bootstrap' }

function newAdminAgent (clientId: string, description: string): Parameters<typeof insertAgent>[1] {
  return { id: newId(), client_id: clientId, name: 'bootstrap admin', description, owner: null, scopes: [...ADMIN_SCOPES], resources: [], metadata: { bootstrap: true } }
}

function createdEvents (agent: AgentRow, credentialId: string): AuditEvent[] {
  return [
    { type: 'agent.created', agentId: agent.id, ...BOOTSTRAP_ACTOR, data: { client_id: agent.client_id, name: agent.name, owner: agent.owner, scopes: agent.scopes } },
    { type: 'credential.created', agentId: agent.id, ...BOOTSTRAP_ACTOR, data: { credential_id: credentialId, expires_at: null } }
  ]
}

/**
 * BOOTSTRAP_CLIENT_ID / BOOTSTRAP_CLIENT_SECRET: makes sure the agent with that client_id exists, is active, holds
 * every admin scope and a live bootstrap credential (credentials.bootstrap), the one whose secret is given.
 * Idempotent: when the secret verifies against that credential, nothing changes; a new secret revokes the old
 * bootstrap credential and creates its successor. Other live credentials of the agent (made through the API before
 * the API refused them) are left alone, and named in a warning. A decommissioned bootstrap agent stays
 * decommissioned (a restart must not undo a retirement): a warning says so.
 */
async function ensureBootstrapAdmin (deps: Deps, clientId: string, secret: string): Promise<void> {
  const at = new Date()
  const outcome = await inOrganization(deps.sql, DEFAULT_ORG_ID, async (tx) => {
    await tx`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK_KEY})`
    const outcome = await reconcileBootstrapAdmin(tx, clientId, secret, at)
    if (!outcome.decommissioned) await deps.audit.recordIn(tx, ...outcome.events)
    return outcome
  })
  if (outcome.decommissioned) {
    deps.log.warn({ agentId: outcome.agentId }, 'the BOOTSTRAP_CLIENT_ID agent is decommissioned and stays so: BOOTSTRAP_* are ignored (remove them, or choose a new client_id)')
    return
  }
  await publishChanges(deps, { agentIds: outcome.statusChanged ? [outcome.agentId] : [], credentialIds: outcome.revoked }, at)
  if (outcome.replaced) deps.log.info({ agentId: outcome.agentId, revokedCredentials: outcome.revoked.length }, 'bootstrap admin credential set from BOOTSTRAP_CLIENT_SECRET')
  if (outcome.others.length > 0) {
    deps.log.warn({ agentId: outcome.agentId, credentialIds: outcome.others }, 'the bootstrap admin holds live credentials besides BOOTSTRAP_CLIENT_SECRET: revoke them with DELETE /api/v1/agents/{id}/credentials/{credential_id}')
  }
}

/**
 * What ensureBootstrapAdmin changes, inside its transaction (under the bootstrap lock): the agent made or set right,
 * the bootstrap credential kept or replaced, and the audit events of those changes.
 */
async function reconcileBootstrapAdmin (tx: Queryable, clientId: string, secret: string, at: Date) {
  const existing = await findAgentByClientId(tx, clientId, 'update')
  if (existing?.status === 'decommissioned') return { decommissioned: true as const, agentId: existing.id }

  let agent: AgentRow
  const events: AuditEvent[] = []
  let statusChanged = false
  if (existing === undefined) {
    agent = await insertAgent(tx, newAdminAgent(clientId, 'Created at start-up from BOOTSTRAP_CLIENT_ID'))
  } else {
    agent = existing
    const changes: AgentChanges = {}
    const missing = ADMIN_SCOPES.filter((scope) => !existing.scopes.includes(scope))
    if (missing.length > 0) changes.scopes = [...existing.scopes, ...missing]
    if (existing.status !== 'active') changes.status = 'active'
    if (Object.keys(changes).length > 0) {
      agent = await updateAgent(tx, existing.id, changes, at)
      events.push(...updateEvents(existing, changes, BOOTSTRAP_ACTOR))
      statusChanged = changes.status !== undefined
    }
  }

  const live = await liveCredentialsWithHash(tx, agent.id)
  const kept = { decommissioned: false as const, agentId: agent.id, events, statusChanged, revoked: [] as string[], replaced: false }
  const current = live.find((credential) => credential.bootstrap)
  if (current !== undefined) {
    if (await verifySecret(current.secret_hash, secret)) return { ...kept, others: othersThan(live, current.id) }
  } else {
    // Made before credentials were marked (sql/0008): the live credential the secret verifies against.
    for (const credential of live) {
      if (!await verifySecret(credential.secret_hash, secret)) continue
      await markBootstrapCredential(tx, credential.id)
      return { ...kept, others: othersThan(live, credential.id) }
    }
  }
  const revoked = current !== undefined && await revokeCredential(tx, agent.id, current.id, at) ? [current.id] : []
  const credential = await insertCredential(tx, { id: newId(), agent_id: agent.id, secret_hash: await hashSecret(secret), expires_at: null, bootstrap: true })
  if (existing === undefined) {
    events.push(...createdEvents(agent, credential.id))
  } else {
    events.push(
      ...revoked.map((id): AuditEvent => ({ type: 'credential.revoked', agentId: agent.id, ...BOOTSTRAP_ACTOR, data: { credential_id: id, reason: 'bootstrap_secret_replaced' } })),
      { type: 'credential.created', agentId: agent.id, ...BOOTSTRAP_ACTOR, data: { credential_id: credential.id, expires_at: null } }
    )
  }
  return { ...kept, revoked, replaced: true, others: othersThan(live, current?.id) }
}

/** The ids of the live credentials other than the bootstrap one. */
function othersThan (live: Array<{ id: string }>, bootstrapId: string | undefined): string[] {
  return live.filter((credential) => credential.id !== bootstrapId).map((credential) => credential.id)
}

/** The console notice of a generated first admin: its credential, shown this once, and how to use it. */
function firstAdminNotice (issuer: string, clientId: string, secret: string): string {
  const rule = '-'.repeat(78)
  return [
    rule,
    'AgentIdP created the first admin agent. Its secret is shown this once and cannot be',
    'recovered: store it now.',
    '',
    `  client_id      ${clientId}`,
    `  client_secret  ${secret}`,
    '',
    'Get an admin access token (client_credentials):',
    '',
    `  curl -s -u '${clientId}:${secret}' -d grant_type=client_credentials ${issuer}/oauth2/token`,
    '',
    `Then call the management API with "Authorization: Bearer <access_token>" (${issuer}/docs).`,
    'To choose the admin credential yourself, set BOOTSTRAP_CLIENT_ID and BOOTSTRAP_CLIENT_SECRET.',
    rule,
    ''
  ].join('\n')
}

/**
 * The embedded default with no BOOTSTRAP_*: when no live agent holds agents:write, creates an admin with a random
 * client_id and secret and prints them once to the console, never through the logger (log pipelines keep what
 * they receive). Later starts find the admin and print nothing.
 */
async function createFirstAdmin (deps: Deps): Promise<void> {
  const created = await inOrganization(deps.sql, DEFAULT_ORG_ID, async (tx) => {
    await tx`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK_KEY})`
    if (await anyLiveAgentHolds(tx, AdminScope.AgentsWrite)) return undefined
    const agent = await insertAgent(tx, newAdminAgent(generateClientId(), 'Created at first start of the embedded default'))
    const credentialId = newId()
    const secret = generateClientSecret(credentialId)
    await insertCredential(tx, { id: credentialId, agent_id: agent.id, secret_hash: await hashSecret(secret), expires_at: null })
    await deps.audit.recordIn(tx, ...createdEvents(agent, credentialId))
    return { agent, secret }
  })
  if (created === undefined) return
  process.stdout.write(firstAdminNotice(deps.defaultIssuer.issuer, created.agent.client_id, created.secret))
  deps.log.info({ agentId: created.agent.id, clientId: created.agent.client_id }, 'created the first admin agent; its credential was printed to the console once')
}

/**
 * An organization's first admin agent, inside the caller's transaction for that organization (inOrganization):
 * an agent holding `scopes` with one client secret, and the events that record both (the caller appends them with
 * the rest of its change). The secret is returned once, for the response; only its hash is stored.
 */
export async function insertAdminAgent (tx: Queryable, scopes: string[], actor: AuditActor, secretHash: (secret: string) => Promise<string> = hashSecret): Promise<{ agent: AgentRow, secret: string, events: AuditEvent[] }> {
  const agent = await insertAgent(tx, { ...newAdminAgent(generateClientId(), 'The organization\'s first admin'), name: 'organization admin', scopes, metadata: {} })
  const credentialId = newId()
  const secret = generateClientSecret(credentialId)
  await insertCredential(tx, { id: credentialId, agent_id: agent.id, secret_hash: await secretHash(secret), expires_at: null })
  return {
    agent,
    secret,
    events: [
      { type: 'agent.created', agentId: agent.id, ...actor, data: { client_id: agent.client_id, name: agent.name, owner: agent.owner, scopes: agent.scopes } },
      { type: 'credential.created', agentId: agent.id, ...actor, data: { credential_id: credentialId, expires_at: null } }
    ]
  }
}

/**
 * Start-up bootstrap of the admin agent (like Keycloak's bootstrap admin), safe when replicas start together:
 * BOOTSTRAP_CLIENT_ID/SECRET when set; otherwise, on the embedded default only (never in production), a generated
 * first admin printed once.
 */
export async function bootstrapAdmin (deps: Deps): Promise<void> {
  const { config } = deps
  if (config.bootstrapClientId !== undefined && config.bootstrapClientSecret !== undefined) {
    await ensureBootstrapAdmin(deps, config.bootstrapClientId, config.bootstrapClientSecret)
  } else if (config.databaseUrl === undefined && config.nodeEnv !== 'production') {
    await createFirstAdmin(deps)
  }
}
