import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { App } from '../../src/app.js'
import { GROUPS, runCli } from '../../src/cli/main.js'
import { projectRoot } from '../../src/paths.js'
import { setupTestContext } from '../helper.js'
import { auditEvents } from '../support/management.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const ADMIN = { AGENTIDP_CLIENT_ID: 'cli-admin', AGENTIDP_CLIENT_SECRET: 'c'.repeat(40) }
let app: App
let env: Record<string, string>

beforeAll(() => {
  context.env = { BOOTSTRAP_CLIENT_ID: ADMIN.AGENTIDP_CLIENT_ID, BOOTSTRAP_CLIENT_SECRET: ADMIN.AGENTIDP_CLIENT_SECRET }
})

/** The app of this test, listening on a free port of 127.0.0.1, and the CLI's environment pointing at it. */
async function listen (): Promise<void> {
  app = await context.build()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  env = { AGENTIDP_URL: `http://127.0.0.1:${address.port}`, ...ADMIN }
}

/** Runs the CLI in-process with the arguments, capturing what it writes. */
async function cli (args: string[], extra: Record<string, string | undefined> = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  const out: string[] = []
  const err: string[] = []
  const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => { out.push(String(line)) })
  const error = vi.spyOn(console, 'error').mockImplementation((line: unknown) => { err.push(String(line)) })
  try {
    const code = await runCli(args, { ...env, ...extra })
    return { code, stdout: out.join('\n'), stderr: err.join('\n') }
  } finally {
    log.mockRestore()
    error.mockRestore()
  }
}

async function json (args: string[], extra: Record<string, string | undefined> = {}): Promise<any> {
  const run = await cli([...args, '--json'], extra)
  expect(run.code, run.stderr).toBe(0)
  return JSON.parse(run.stdout)
}

afterEach(() => { vi.restoreAllMocks() })

describe('agentidp, against a running server', () => {
  it('agents create registers the agent and its first secret, printed once, and that secret gets a token', async () => {
    await listen()
    const created = await cli(['agents', 'create', '--name', 'weather bot', '--scope', 'weather:read', '--scope', 'weather:write', '--owner', 'team-weather'])
    expect(created.code, created.stderr).toBe(0)
    const clientId = /^client_id\s+(agt_\S+)$/m.exec(created.stdout)?.[1] as string
    const secret = /^client_secret\s+(\S+)$/m.exec(created.stdout)?.[1] as string
    expect(clientId).toBeDefined()
    expect(secret).toBeDefined()
    expect(created.stdout).toMatch(/^scopes\s+weather:read weather:write$/m)
    expect(created.stdout).toContain('shown this once')

    // The CLI went through the API: the audit trail names the admin it authenticated as.
    const agentId = (await auditEvents(app, 'agent.created')).find((event) => event.data.client_id === clientId)?.agent_id
    const events = (await auditEvents(app, 'agent.created', 'credential.created')).filter((event) => event.agent_id === agentId)
    expect(events.map((event) => [event.type, event.actor])).toEqual([['agent.created', 'cli-admin'], ['credential.created', 'cli-admin']])

    const token = await cli(['token', '--scope', 'weather:read'], { AGENTIDP_CLIENT_ID: clientId, AGENTIDP_CLIENT_SECRET: secret })
    expect(token.code, token.stderr).toBe(0)
    expect(decodeJwt(token.stdout.trim())).toMatchObject({ client_id: clientId, scope: 'weather:read' })
    // Flags win over the environment.
    const byFlags = await json(['token', '--client-id', clientId, '--client-secret', secret])
    expect(byFlags).toMatchObject({ token_type: 'Bearer', scope: 'weather:read weather:write' })
  })

  it('agents list, get, suspend, reactivate and decommission, by id or by client_id', async () => {
    await listen()
    const { agent } = await json(['agents', 'create', '--name', 'lifecycle', '--owner', 'cli-lifecycle'])
    expect((await json(['agents', 'get', agent.client_id])).id).toBe(agent.id)
    expect((await json(['agents', 'get', agent.id])).client_id).toBe(agent.client_id)
    expect((await json(['agents', 'list', '--owner', 'cli-lifecycle'])).map((a: { id: string }) => a.id)).toEqual([agent.id])
    const table = await cli(['agents', 'list', '--owner', 'cli-lifecycle'])
    expect(table.stdout.split('\n')).toEqual([
      expect.stringMatching(/^ID\s+CLIENT_ID\s+NAME\s+STATUS\s+OWNER\s+SCOPES$/),
      expect.stringMatching(new RegExp(`^${agent.id}\\s+${agent.client_id}\\s+lifecycle\\s+active\\s+cli-lifecycle\\s+-$`))
    ])
    expect((await json(['agents', 'suspend', agent.client_id])).status).toBe('suspended')
    expect((await json(['agents', 'list', '--owner', 'cli-lifecycle', '--status', 'suspended'])).length).toBe(1)
    expect((await json(['agents', 'reactivate', agent.client_id])).status).toBe('active')
    expect((await json(['agents', 'decommission', agent.id])).status).toBe('decommissioned')
  })

  it('credentials create, list and revoke', async () => {
    await listen()
    const { agent, credential: first } = await json(['agents', 'create', '--name', 'rotating'])
    const second = await json(['credentials', 'create', agent.client_id, '--expires-at', '2999-01-01T00:00:00Z'])
    expect(second.client_secret).toEqual(expect.any(String))
    const listed = await json(['credentials', 'list', agent.client_id])
    expect(listed.map((c: { id: string }) => c.id).sort()).toEqual([first.id, second.id].sort())
    expect(JSON.stringify(listed)).not.toContain(second.client_secret)
    const revoked = await cli(['credentials', 'revoke', agent.client_id, first.id])
    expect(revoked).toMatchObject({ code: 0, stdout: `revoked ${first.id}` })
    const refused = await cli(['token'], { AGENTIDP_CLIENT_ID: agent.client_id, AGENTIDP_CLIENT_SECRET: first.client_secret })
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^agentidp: token request refused: 401 invalid_client: .+$/)
    expect((await cli(['token'], { AGENTIDP_CLIENT_ID: agent.client_id, AGENTIDP_CLIENT_SECRET: second.client_secret })).code).toBe(0)
  })

  it('credentials trust registers a federated credential, and refuses claims that are not a JSON object', async () => {
    await listen()
    const { agent } = await json(['agents', 'create', '--name', 'deployer'])
    const trusted = await json(['credentials', 'trust', agent.client_id, '--issuer', 'https://token.actions.githubusercontent.com', '--subject', 'repo:acme/api:ref:refs/heads/main', '--claims', '{"repository_id":"892341"}'])
    expect(trusted).toMatchObject({ type: 'federated', client_id: agent.client_id, issuer: 'https://token.actions.githubusercontent.com', subject: 'repo:acme/api:ref:refs/heads/main', claims: { repository_id: '892341' } })
    expect((await json(['credentials', 'list', agent.client_id])).map((c: { type: string }) => c.type).sort()).toEqual(['client_secret', 'federated'])
    const refused = await cli(['credentials', 'trust', agent.client_id, '--issuer', 'https://issuer.example', '--subject', 's', '--claims', '[1]'])
    expect(refused).toMatchObject({ code: 2, stderr: 'agentidp: --claims must be a JSON object' })
    expect((await cli(['credentials', 'trust', agent.client_id, '--subject', 's'])).stderr).toBe('agentidp: credentials trust needs --issuer and --subject')
  })

  it('audit tail shows the latest events of a type, oldest first', async () => {
    await listen()
    const { agent: a } = await json(['agents', 'create', '--name', 'first'])
    const { agent: b } = await json(['agents', 'create', '--name', 'second'])
    const run = await cli(['audit', 'tail', '--type', 'agent.created', '--limit', '2', '--json'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout.split('\n').map((line) => JSON.parse(line).agent_id)).toEqual([a.id, b.id])
    const table = await cli(['audit', 'tail', '--type', 'agent.created', '--limit', '1'])
    expect(table.stdout).toMatch(/^SEQ\s+OCCURRED_AT\s+TYPE\s+ACTOR\s+AGENT_ID\s+DATA\n\d+\s+\S+\s+agent\.created\s+cli-admin\s+/)
  })

  it('errors are one line on stderr with a non-zero exit code', async () => {
    await listen()
    const closed = `http://127.0.0.1:${await freePort()}`
    const cases: Array<[string[], Record<string, string | undefined>, number, RegExp]> = [
      [['agents', 'get', 'agt_nobody'], {}, 1, /^agentidp: no agent with the client_id agt_nobody$/],
      [['agents', 'get', '01900000-0000-7000-8000-000000000000'], {}, 1, /^agentidp: 404 Not Found: .+$/],
      [['agents', 'create', '--name', ''], {}, 1, /^agentidp: 400 Bad Request: body\/name must NOT have fewer than 1 characters$/],
      [['agents', 'create'], {}, 2, /^agentidp: agents create needs --name$/],
      [['agents', 'list', '--nme', 'x'], {}, 2, /^agentidp: Unknown option '--nme' \(agentidp agents list --help\)$/],
      [['agents', 'get'], {}, 2, /^agentidp: usage: agentidp agents get <id\|client_id>$/],
      [['agents', 'frobnicate'], {}, 2, /^agentidp: unknown subcommand agents frobnicate/],
      [['nothing'], {}, 2, /^agentidp: unknown command nothing/],
      [['agents', 'list'], { AGENTIDP_CLIENT_SECRET: 'wrong-secret' }, 1, /^agentidp: token request refused: 401 invalid_client: /],
      [['agents', 'list'], { AGENTIDP_CLIENT_ID: undefined }, 2, /^agentidp: no client to authenticate as: set AGENTIDP_CLIENT_ID/],
      [['agents', 'list'], { AGENTIDP_URL: closed }, 1, new RegExp(`^agentidp: cannot reach AgentIdP at ${closed}: ECONNREFUSED \\(is the server running\\? set --url or AGENTIDP_URL\\)$`)],
      [['agents', 'list'], { AGENTIDP_URL: 'ftp://example' }, 2, /^agentidp: --url \/ AGENTIDP_URL is not an http\(s\) URL/]
    ]
    for (const [args, extra, code, stderr] of cases) {
      const run = await cli(args, extra)
      expect(run.code, args.join(' ')).toBe(code)
      expect(run.stderr, args.join(' ')).toMatch(stderr)
      expect(run.stderr.split('\n'), args.join(' ')).toHaveLength(1)
      expect(run.stdout, args.join(' ')).toBe('')
    }
  })

  it('--help on every command and group, exit 0, with its usage', async () => {
    const overview = await cli(['--help'])
    expect(overview.code).toBe(0)
    for (const group of GROUPS) {
      expect(overview.stdout).toContain(`  ${group.name} `)
      for (const command of group.commands) {
        const name = [group.name, command.name].filter(Boolean)
        const run = await cli([...name, '--help'])
        expect(run.code, name.join(' ')).toBe(0)
        expect(run.stdout).toContain(`Usage: agentidp ${name.join(' ')} ${command.usage}`)
        expect(run.stdout).toContain('AGENTIDP_URL')
      }
      if (group.commands[0]?.name !== '') expect((await cli([group.name, '--help'])).stdout).toContain(`Usage: agentidp ${group.name} <subcommand>`)
    }
  })
})

describe('the agentidp command as a process', () => {
  it('is the package\'s bin (npx agentidp): the compiled entry, which starts with a node shebang', () => {
    const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> }
    expect(pkg.bin).toEqual({ agentidp: 'dist/src/cli/index.js' })
    expect(readFileSync(join(projectRoot, 'src/cli/index.ts'), 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node')
  })

  it('audit tail --follow prints each new event as it is recorded, and stops on SIGINT with exit 0', async () => {
    await listen()
    const follow = ServerProcess.command(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'audit', 'tail', '--follow', '--type', 'agent.created', '--limit', '1', '--json'], env)
    try {
      const { agent } = await json(['agents', 'create', '--name', 'followed'])
      while (!follow.stdout.includes(agent.id)) {
        if (follow.child.exitCode !== null) throw new Error(`agentidp exited: ${follow.stderr}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      follow.child.kill('SIGINT')
      expect(await follow.exited).toBe(0)
      const events = follow.stdout.trim().split('\n').map((line) => JSON.parse(line) as { agent_id: string })
      expect(events.filter((event) => event.agent_id === agent.id)).toHaveLength(1)
      expect(follow.stderr).toBe('')
    } finally {
      follow.kill()
    }
  })
})
