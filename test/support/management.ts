import { ownerSql } from '../helper.js'
import type { App } from '../../src/app.js'
import { ADMIN_SCOPES } from '../../src/scopes.js'
import { mintAccessToken } from './tokens.js'

/** Authorization for a management API call, by a caller holding the scopes (default: every admin scope). */
export async function authHeaders (app: App, scopes: string[] = ADMIN_SCOPES, clientId = 'test-admin'): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await mintAccessToken(app, { scopes, clientId })}` }
}

/** Registers an agent through the API; throws unless the answer is 201. */
export async function createAgent (app: App, body: Record<string, unknown> = { name: 'weather bot' }): Promise<Record<string, any>> {
  const response = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: await authHeaders(app), payload: body })
  if (response.statusCode !== 201) throw new Error(`create agent: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Issues a credential through the API; throws unless the answer is 201. */
export async function createCredential (app: App, agentId: string, body: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const response = await app.inject({ method: 'POST', url: `/api/v1/agents/${agentId}/credentials`, headers: await authHeaders(app), payload: body })
  if (response.statusCode !== 201) throw new Error(`create credential: ${response.statusCode} ${response.body}`)
  return response.json()
}

export interface RecordedEvent {
  type: string
  agent_id: string | null
  actor: string
  data: Record<string, any>
}

/** Audit events in chain order, optionally only those of the types given. */
export async function auditEvents (app: App, ...types: string[]): Promise<RecordedEvent[]> {
  const rows = await ownerSql(app)<RecordedEvent[]>`select type, agent_id, actor, data from audit_events order by seq`
  return types.length === 0 ? [...rows] : rows.filter((row) => types.includes(row.type))
}
