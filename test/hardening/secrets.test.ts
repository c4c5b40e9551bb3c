import { DEFAULT_ORG_ID } from '../../src/database.js'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { exportJWK } from 'jose'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { newId, timeOfId } from '../../src/ids.js'
import { AdminScope } from '../../src/scopes.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()

const BOOTSTRAP_SECRET = 'bootstrap-secret-that-is-long-enough-0123456789'
const METRICS_TOKEN = 'metrics-token-that-must-stay-private-42'

/** Every string that must never be seen outside the response that hands it out, and substrings that identify it. */
class Secrets {
  readonly #values = new Map<string, string>()

  add (label: string, value: string): void {
    this.#values.set(value, label)
  }

  /** A token counts as leaked by its whole, or by its signature alone (header and claims are not secret). */
  addToken (label: string, token: string): void {
    this.add(label, token)
    this.add(`${label} (signature)`, token.split('.')[2] as string)
  }

  /** The labels of the secrets found in the text. */
  foundIn (text: string): string[] {
    return [...this.#values].filter(([value]) => text.includes(value)).map(([, label]) => label)
  }

  get size (): number {
    return this.#values.size
  }
}

/** The private key as every form it exists in: PEM body lines (from DATA_DIR and from the loaded key) and JWK members. */
async function privateKeyMaterial (app: App, dataDir: string, secrets: Secrets): Promise<void> {
  const pems = [readFileSync(join(dataDir, 'jwt-private.pem'), 'utf8'), app.keys.current.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string]
  for (const pem of pems) {
    for (const line of pem.split('\n')) if (line.length >= 40 && !line.startsWith('-----')) secrets.add('private key PEM line', line)
  }
  const jwk = await exportJWK(app.keys.current.privateKey)
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const) secrets.add(`private JWK ${member}`, (jwk[member] as string).slice(0, 48))
}

describe('secrets never leak', () => {
  it('after a full scenario, no secret, token or private key is in any log line (trace), error body, audit event or database column', async () => {
    const logs = new LogCapture()
    const app = await context.build({ BOOTSTRAP_CLIENT_ID: 'ops-bootstrap', BOOTSTRAP_CLIENT_SECRET: BOOTSTRAP_SECRET, METRICS_TOKEN, RATE_LIMIT_API_PER_MIN: '0' }, { logs })
    expect(app.log.level).toBe('trace')
    const secrets = new Secrets()
    secrets.add('bootstrap secret', BOOTSTRAP_SECRET)
    secrets.add('metrics token', METRICS_TOKEN)
    await privateKeyMaterial(app, context.dataDir, secrets)

    const responses: Array<{ what: string, response: LightMyRequestResponse, handsOutSecret: boolean }> = []
    const call = async (options: InjectOptions, handsOutSecret = false): Promise<LightMyRequestResponse> => {
      const response = await app.inject(options)
      responses.push({ what: `${options.method} ${options.url}`, response, handsOutSecret })
      return response
    }

    const adminToken = await mintAccessToken(app)
    secrets.addToken('admin token', adminToken)
    const admin = { authorization: `Bearer ${adminToken}` }

    // Agents and credentials, rotation, usage.
    const agents: Array<Record<string, any>> = []
    for (const name of ['alpha', 'beta']) {
      const created = await call({ method: 'POST', url: '/api/v1/agents', headers: admin, payload: { name, scopes: ['weather:read'] } })
      expect(created.statusCode).toBe(201)
      agents.push(created.json())
    }
    const [alpha, beta] = agents as [Record<string, any>, Record<string, any>]
    const credentials: Array<Record<string, any>> = []
    for (const agent of [alpha, alpha, beta]) {
      const issued = await call({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: admin, payload: {} }, true)
      expect(issued.statusCode).toBe(201)
      const credential = issued.json()
      credentials.push(credential)
      secrets.add('client secret', credential.client_secret)
      secrets.add('client secret (random part)', credential.client_secret.split('_').slice(1).join('_'))
    }
    for (const url of ['/api/v1/agents', `/api/v1/agents/${alpha.id}`, `/api/v1/agents/${alpha.id}/credentials`, `/api/v1/agents/${alpha.id}/usage`, '/api/v1/audit-events', '/api/v1/audit-events/export']) {
      expect((await call({ method: 'GET', url, headers: admin })).statusCode).toBe(200)
    }

    // Agent tokens used, one of them revoked by jti, one through its credential, one through its suspended agent.
    const jti = newId()
    const revokedByJti = await mintAccessToken(app, { sub: alpha.id, jti, claims: { credential_id: credentials[0]?.id } })
    const viaCredential = await mintAccessToken(app, { sub: alpha.id, claims: { credential_id: credentials[1]?.id } })
    const viaAgent = await mintAccessToken(app, { sub: beta.id, claims: { credential_id: credentials[2]?.id } })
    for (const [label, token] of [['revoked token', revokedByJti], ['credential token', viaCredential], ['agent token', viaAgent]] as const) {
      secrets.addToken(label, token)
      expect((await call({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200)
    }
    await app.revocations.revokeToken({ orgId: DEFAULT_ORG_ID, jti, agentId: alpha.id, credentialId: credentials[0]?.id, issuedAtMs: timeOfId(jti), expiresAtMs: Date.now() + 300_000 }, 'test')
    expect((await call({ method: 'DELETE', url: `/api/v1/agents/${alpha.id}/credentials/${credentials[1]?.id as string}`, headers: admin })).statusCode).toBe(204)
    expect((await call({ method: 'PATCH', url: `/api/v1/agents/${beta.id}`, headers: admin, payload: { status: 'suspended' } })).statusCode).toBe(200)
    for (const token of [revokedByJti, viaCredential, viaAgent]) {
      expect((await call({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401)
    }

    // Failed authentications and mistakes that carry a secret where it does not belong.
    const expired = await mintAccessToken(app, { expiresIn: -120 })
    const narrow = await mintAccessToken(app, { scopes: [AdminScope.AuditRead] })
    secrets.addToken('expired token', expired)
    secrets.addToken('narrow token', narrow)
    const secret = credentials[2]?.client_secret as string
    const failures: InjectOptions[] = [
      { method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${expired}` } },
      { method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${narrow}` } },
      { method: 'GET', url: '/api/v1/agents', headers: { authorization: `Basic ${Buffer.from(`${beta.client_id as string}:${secret}`).toString('base64')}` } },
      { method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${secret}` } },
      { method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${adminToken} ${secret}` } },
      { method: 'GET', url: `/api/v1/agents?access_token=${adminToken}&client_secret=${secret}`, headers: admin },
      { method: 'POST', url: '/api/v1/agents', headers: admin, payload: { name: 'x', client_secret: secret } },
      { method: 'POST', url: '/api/v1/agents', headers: { ...admin, 'content-type': 'application/json' }, payload: `{"name": "${secret}` },
      { method: 'POST', url: `/api/v1/agents/${alpha.id}/credentials`, headers: admin, payload: { expires_at: secret } },
      { method: 'PATCH', url: `/api/v1/agents/${alpha.id}`, headers: admin, payload: { status: secret } },
      { method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${secret}` } }
    ]
    for (const options of failures) expect((await call(options)).statusCode, `${options.method} ${options.url}`).toBeGreaterThanOrEqual(400)
    expect((await call({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).statusCode).toBe(200)
    expect((await call({ method: 'DELETE', url: `/api/v1/agents/${alpha.id}`, headers: admin })).statusCode).toBe(204)
    await app.close()

    expect(secrets.size).toBeGreaterThan(20)
    expect(logs.lines.length).toBeGreaterThan(50)
    // Every log line, at trace level.
    expect(secrets.foundIn(logs.text), 'in the log').toEqual([])
    expect(logs.text).not.toContain('$argon2')
    // Every response body but the one credential response that hands its secret out, and every response header.
    for (const { what, response, handsOutSecret } of responses) {
      if (!handsOutSecret) expect(secrets.foundIn(response.body), `in the body of ${what} → ${response.statusCode}`).toEqual([])
      expect(secrets.foundIn(JSON.stringify(response.headers)), `in the headers of ${what}`).toEqual([])
      expect(response.body).not.toContain('$argon2')
    }
    // Every column of every table (audit_events included), read afresh after the app closed.
    const rebuilt = await context.build()
    const tables = await ownerSql(rebuilt)<Array<{ table_name: string }>>`
      select table_name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE'`
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(['agents', 'credentials', 'audit_events', 'token_revocations']))
    for (const { table_name: table } of tables) {
      const rows = await ownerSql(rebuilt).unsafe(`select * from "${table}"`)
      const text = JSON.stringify(rows)
      expect(secrets.foundIn(text), `in table ${table}`).toEqual([])
      if (table !== 'credentials') expect(text, `argon2 hash in ${table}`).not.toContain('$argon2')
    }
    // The one place a hash belongs: credentials.secret_hash, and only there.
    const hashes = await ownerSql(rebuilt)<Array<{ secret_hash: string }>>`select secret_hash from credentials`
    expect(hashes.every((row) => row.secret_hash.startsWith('$argon2id$'))).toBe(true)
    const auditText = JSON.stringify(await ownerSql(rebuilt)`select * from audit_events`)
    expect(auditText).toContain('auth.failed')
  })
})
