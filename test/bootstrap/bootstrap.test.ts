import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { App } from '../../src/app.js'
import { updateAgent } from '../../plugins/clients/agents/repository.js'
import { revokeAllCredentials } from '../../plugins/clients/credentials/repository.js'
import { agentChangedKey, credentialChangedKey } from '../../plugins/revocation/keys.js'
import { ADMIN_SCOPES } from '../../src/scopes.js'
import { credentialIdOfSecret, verifySecret } from '../../src/secrets.js'
import { LogCapture, ownerSql, setupTestContext } from '../helper.js'
import { auditEvents } from '../support/management.js'

const context = setupTestContext()

interface Row { id: string, client_id: string, scopes: string[], status: string }
interface CredentialRow { id: string, secret_hash: string, revoked_at: Date | null }

const newSecret = (): string => randomBytes(24).toString('base64url')

async function agentByClientId (app: App, clientId: string): Promise<Row | undefined> {
  const [row] = await ownerSql(app)<Row[]>`select id, client_id, scopes, status from agents where client_id = ${clientId}`
  return row
}

async function credentialsOf (app: App, agentId: string): Promise<CredentialRow[]> {
  return [...await ownerSql(app)<CredentialRow[]>`select id, secret_hash, revoked_at from credentials where agent_id = ${agentId} order by id`]
}

describe('BOOTSTRAP_CLIENT_ID / BOOTSTRAP_CLIENT_SECRET', () => {
  it('creates the admin agent holding every admin scope and exactly that credential', async () => {
    // Any client_id, any secret of 32 or more characters.
    const clientId = `ops admin ${randomBytes(4).toString('hex')}@example.com`
    const secret = `correct horse battery staple: ${newSecret()}`
    const app = await context.build({ BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: secret })
    const agent = await agentByClientId(app, clientId)
    expect(agent).toMatchObject({ status: 'active' })
    expect(agent?.scopes).toEqual(expect.arrayContaining(ADMIN_SCOPES))
    const credentials = await credentialsOf(app, agent?.id as string)
    expect(credentials).toHaveLength(1)
    expect(credentials[0]?.revoked_at).toBeNull()
    expect(await verifySecret(credentials[0]?.secret_hash as string, secret)).toBe(true)
    // A bootstrap secret carries no credential id: the token endpoint checks the agent's bootstrap credential.
    expect(credentialIdOfSecret(secret)).toBeUndefined()

    const events = (await auditEvents(app)).filter((e) => e.agent_id === agent?.id)
    expect(events.map((e) => [e.type, e.actor])).toEqual([['agent.created', 'bootstrap'], ['credential.created', 'bootstrap']])
    expect(JSON.stringify(events)).not.toContain(secret)
  })

  it('is idempotent across restarts, and a new secret replaces the old one', async () => {
    const clientId = `admin-${randomBytes(4).toString('hex')}`
    const first = newSecret()
    const env = { BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: first }

    let app = await context.build(env)
    const agent = await agentByClientId(app, clientId) as Row
    const [original] = await credentialsOf(app, agent.id)
    const eventCount = (await auditEvents(app)).length
    await app.close()

    for (let restart = 0; restart < 2; restart++) {
      app = await context.build(env)
      expect(await credentialsOf(app, agent.id)).toEqual([original])
      expect((await auditEvents(app)).length).toBe(eventCount)
      await app.close()
    }

    const second = newSecret()
    app = await context.build({ ...env, BOOTSTRAP_CLIENT_SECRET: second })
    const credentials = await credentialsOf(app, agent.id)
    expect(credentials).toHaveLength(2)
    expect(credentials[0]?.id).toBe(original?.id)
    expect(credentials[0]?.revoked_at).toBeInstanceOf(Date)
    expect(credentials[1]?.revoked_at).toBeNull()
    expect(await verifySecret(credentials[1]?.secret_hash as string, second)).toBe(true)
    expect(await verifySecret(credentials[1]?.secret_hash as string, first)).toBe(false)
    expect(await app.store.get(credentialChangedKey(original?.id as string))).not.toBeNull()
    expect((await agentByClientId(app, clientId))?.id).toBe(agent.id)

    const events = (await auditEvents(app)).slice(eventCount)
    expect(events.map((e) => [e.type, e.data.credential_id])).toEqual([['credential.revoked', original?.id], ['credential.created', credentials[1]?.id]])
  })

  it('restores a suspended bootstrap agent and the admin scopes it lost', async () => {
    const clientId = `admin-${randomBytes(4).toString('hex')}`
    const env = { BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: newSecret() }
    let app = await context.build(env)
    const agent = await agentByClientId(app, clientId) as Row
    // The API refuses this (409); an earlier release, or a hand-edited database, may have done it.
    await updateAgent(ownerSql(app), agent.id, { status: 'suspended', scopes: ['agents:read', 'reports:read'] }, new Date(), true)
    await app.close()

    app = await context.build(env)
    const restored = await agentByClientId(app, clientId)
    expect(restored?.status).toBe('active')
    expect(restored?.scopes).toEqual(['agents:read', 'reports:read', ...ADMIN_SCOPES.filter((scope) => scope !== 'agents:read')])
    expect(await app.store.get(agentChangedKey(agent.id))).not.toBeNull()
    const events = (await auditEvents(app, 'agent.updated', 'agent.reactivated')).filter((e) => e.agent_id === agent.id && e.actor === 'bootstrap')
    expect(events.map((e) => e.type)).toEqual(['agent.updated', 'agent.reactivated'])
    expect((await credentialsOf(app, agent.id)).filter((c) => c.revoked_at === null)).toHaveLength(1)
  })

  it('leaves a decommissioned bootstrap agent decommissioned, with a warning', async () => {
    const clientId = `admin-${randomBytes(4).toString('hex')}`
    const env = { BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: newSecret() }
    let app = await context.build(env)
    const agent = await agentByClientId(app, clientId) as Row
    // The API refuses this (409); an earlier release may have done it.
    await revokeAllCredentials(ownerSql(app), agent.id)
    await updateAgent(ownerSql(app), agent.id, { status: 'decommissioned' })
    await app.close()

    const logs = new LogCapture()
    app = await context.build({ ...env, BOOTSTRAP_CLIENT_SECRET: newSecret() }, { logs })
    expect((await agentByClientId(app, clientId))?.status).toBe('decommissioned')
    expect((await credentialsOf(app, agent.id)).every((c) => c.revoked_at !== null)).toBe(true)
    expect(logs.text).toContain('BOOTSTRAP_CLIENT_ID agent is decommissioned')
  })

  it('gives one live credential when two replicas start at once', async ({ skip }) => {
    // PGlite has a single session: two apps on it at once is not a supported set-up.
    if (context.database.kind === 'pglite') skip()
    const clientId = `admin-${randomBytes(4).toString('hex')}`
    const secret = newSecret()
    const [one, two] = await Promise.all([
      context.build({ BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: secret }),
      context.build({ BOOTSTRAP_CLIENT_ID: clientId, BOOTSTRAP_CLIENT_SECRET: secret })
    ])
    const agents = await ownerSql(one)`select id from agents where client_id = ${clientId}`
    expect(agents).toHaveLength(1)
    const credentials = await credentialsOf(two, agents[0]?.id as string)
    expect(credentials).toHaveLength(1)
    expect(await verifySecret(credentials[0]?.secret_hash as string, secret)).toBe(true)
  })
})

describe('first admin on the embedded default', () => {
  const dataDirs: string[] = []
  afterEach(() => {
    vi.restoreAllMocks()
    for (const dir of dataDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
  })

  function captureStdout (): string[] {
    const written: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
      written.push(String(chunk))
      return write(chunk as string, ...(rest as []))
    }) as typeof process.stdout.write)
    return written
  }

  it('creates an admin and prints its credential once, to the console only; later starts print nothing', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'agentidp-embedded-'))
    dataDirs.push(dataDir)
    const env = { DATABASE_URL: undefined, DATA_DIR: dataDir }
    const written = captureStdout()
    const logs = new LogCapture()

    let app = await context.build(env, { logs })
    const notices = written.filter((chunk) => chunk.includes('client_secret'))
    expect(notices).toHaveLength(1)
    const notice = notices[0] as string
    const clientId = /client_id +(\S+)/.exec(notice)?.[1] as string
    const secret = /client_secret +(\S+)/.exec(notice)?.[1] as string
    expect(notice).toContain(`curl -s -u '${clientId}:${secret}' -d grant_type=client_credentials ${app.config.issuer}/oauth2/token`)

    const agent = await agentByClientId(app, clientId) as Row
    expect(agent).toMatchObject({ status: 'active', scopes: ADMIN_SCOPES })
    const [credential] = await credentialsOf(app, agent.id)
    expect(credentialIdOfSecret(secret)).toBe(credential?.id)
    expect(await verifySecret(credential?.secret_hash as string, secret)).toBe(true)
    expect(logs.text).not.toContain(secret.slice(33))
    expect(logs.text).toContain('created the first admin agent')
    await app.close()

    app = await context.build(env)
    expect(written.filter((chunk) => chunk.includes('client_secret'))).toHaveLength(1)
    expect(await ownerSql(app)`select id from agents`).toHaveLength(1)
  })

  it('does nothing with DATABASE_URL set', async () => {
    const written = captureStdout()
    const app = await context.build()
    const [{ count }] = await ownerSql(app)<[{ count: string }]>`select count(*) from agents where description = 'Created at first start of the embedded default'`
    expect(count).toBe('0')
    expect(written.filter((chunk) => chunk.includes('client_secret'))).toHaveLength(0)
  })
})
