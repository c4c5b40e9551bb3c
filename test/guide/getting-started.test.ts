import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { runCli } from '../../src/cli/main.js'
import { projectRoot } from '../../src/paths.js'
import { setupTestContext } from '../helper.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const ADMIN = { AGENTIDP_CLIENT_ID: 'guide-admin', AGENTIDP_CLIENT_SECRET: 'g'.repeat(40) }
const guide = readFileSync(join(projectRoot, 'docs/guide/getting-started.md'), 'utf8')
/** The fenced blocks of the guide with the info string given. */
const blocks = (language: string): string[] => [...guide.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((match) => match[1] as string)

// Snippets run as the reader runs them: .mjs files whose imports resolve to this project's node_modules.
const scratch = mkdtempSync(join(tmpdir(), 'agentidp-guide-'))
symlinkSync(join(projectRoot, 'node_modules'), join(scratch, 'node_modules'))
afterAll(() => { rmSync(scratch, { recursive: true, force: true }) })
const processes: ServerProcess[] = []
afterEach(() => { for (const process of processes.splice(0)) process.kill() })

/** Runs the CLI in-process as `npx agentidp …` would, with the environment given; its stdout. */
async function agentidp (args: string[], env: Record<string, string>): Promise<string> {
  const out: string[] = []
  const log = vi.spyOn(console, 'log').mockImplementation((line: unknown) => { out.push(String(line)) })
  const error = vi.spyOn(console, 'error').mockImplementation((line: unknown) => { out.push(`stderr: ${String(line)}`) })
  try {
    const code = await runCli(args, env)
    expect(code, out.join('\n')).toBe(0)
    return out.join('\n')
  } finally {
    log.mockRestore()
    error.mockRestore()
  }
}

/** Runs a snippet of the guide as a program of its own and returns what it printed. */
async function runSnippet (name: string, code: string, env: Record<string, string>): Promise<string> {
  const file = join(scratch, `${name}.mjs`)
  writeFileSync(file, code)
  const run = ServerProcess.command(process.execPath, [file], env, scratch)
  processes.push(run)
  expect(await run.exited, `${name}: ${run.stderr}`).toBe(0)
  return run.stdout.trim()
}

describe('docs/guide/getting-started.md, followed to the letter', () => {
  it('registers an agent, gets tokens with the CLI, curl, openid-client and oauth4webapi, and the example resource server accepts them', async () => {
    const port = await freePort()
    const issuer = `http://localhost:${port}`
    const app = await context.build({ ISSUER: issuer, BOOTSTRAP_CLIENT_ID: ADMIN.AGENTIDP_CLIENT_ID, BOOTSTRAP_CLIENT_SECRET: ADMIN.AGENTIDP_CLIENT_SECRET })
    await app.listen({ port, host: 'localhost' })
    const rsPort = await freePort()
    const audience = `http://localhost:${rsPort}`
    // The guide's URLs, moved to this test's ports.
    const local = (text: string): string => text.replaceAll('http://localhost:3000', issuer).replaceAll('http://localhost:4000', audience)

    // 2. Register an agent: the CLI command as written ...
    const admin = { AGENTIDP_URL: issuer, ...ADMIN }
    const create = /^npx agentidp (agents create .+)$/m.exec(guide)?.[1] as string
    expect(create).toBe('agents create --name weather-bot --scope weather:read --resource http://localhost:4000')
    const created = await agentidp(local(create).split(' '), admin)
    const CLIENT_ID = /^client_id\s+(\S+)$/m.exec(created)?.[1] as string
    const CLIENT_SECRET = /^client_secret\s+(\S+)$/m.exec(created)?.[1] as string
    expect(CLIENT_SECRET).toBeDefined()

    // ... and the curl lines, when curl is there.
    const curlBlock = blocks('sh').find((block) => block.startsWith('ADMIN_TOKEN=')) as string
    expect(curlBlock).toBeDefined()
    // Asynchronously: the server answering curl runs in this very process.
    if (spawnSync('curl', ['--version']).status === 0) {
      const curl = ServerProcess.command('sh', ['-c', local(curlBlock)], ADMIN)
      processes.push(curl)
      expect(await curl.exited, curl.stderr).toBe(0)
      expect(JSON.parse(curl.stdout)).toMatchObject({ client_id: expect.stringMatching(/^agt_/), client_secret: expect.any(String) })
    }

    // 3. The resource server, as the guide starts it.
    expect(guide).toContain('node examples/resource-server/server.mjs')
    const resourceServer = ServerProcess.command(process.execPath, ['examples/resource-server/server.mjs'], { ISSUER: issuer, PORT: String(rsPort), AUDIENCE: audience })
    processes.push(resourceServer)
    while (!resourceServer.stdout.includes('resource server listening')) {
      if (resourceServer.child.exitCode !== null) throw new Error(`resource server exited: ${resourceServer.stderr}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const forecast = async (token?: string): Promise<{ status: number, body: any }> => {
      const response = await fetch(`${audience}/forecast`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
      return { status: response.status, body: await response.json() }
    }

    // 4. A token from the CLI for the resource server, and the call.
    const tokenLine = /^TOKEN=\$\(npx agentidp (token .+)\)$/m.exec(guide)?.[1] as string
    const tokenArgs = local(tokenLine).replace('"$CLIENT_ID"', CLIENT_ID).replace('"$CLIENT_SECRET"', CLIENT_SECRET).split(' ')
    const cliToken = await agentidp(tokenArgs, { AGENTIDP_URL: issuer })
    const accepted = await forecast(cliToken)
    expect(accepted).toEqual({ status: 200, body: { forecast: 'sunny', for_agent: expect.any(String), client_id: CLIENT_ID } })
    expect((await forecast()).status).toBe(401)
    const otherAudience = JSON.parse(await agentidp(['token', '--client-id', CLIENT_ID, '--client-secret', CLIENT_SECRET, '--json'], { AGENTIDP_URL: issuer }))
    expect(await forecast(otherAudience.access_token)).toMatchObject({ status: 401, body: { error: expect.stringContaining('aud') } })

    // 5. The two snippets, unchanged, with the environment they read.
    const [openidClient, oauth4webapi] = ['openid-client', 'oauth4webapi'].map((library) => blocks('js').find((block) => block.includes(`from '${library}'`)) as string)
    const env = { ISSUER: issuer, CLIENT_ID, CLIENT_SECRET, RESOURCE: audience }
    for (const [name, code] of [['openid-client', openidClient], ['oauth4webapi', oauth4webapi]] as const) {
      expect(code, `the ${name} snippet`).toBeDefined()
      const token = await runSnippet(name, code as string, env)
      expect(await forecast(token), name).toMatchObject({ status: 200, body: { client_id: CLIENT_ID } })
    }
    // And what the guide warns about: discovered at 127.0.0.1 while ISSUER says localhost, a careful client refuses.
    const mismatch = ServerProcess.command(process.execPath, [join(scratch, 'oauth4webapi.mjs')], { ...env, ISSUER: `http://127.0.0.1:${port}` }, scratch)
    processes.push(mismatch)
    expect(await mismatch.exited).not.toBe(0)
    expect(mismatch.stderr).toMatch(/issuer/)
  }, 90_000)
})
