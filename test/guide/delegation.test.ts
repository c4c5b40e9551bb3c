import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { projectRoot } from '../../src/paths.js'
import { setupTestContext } from '../helper.js'
import { authHeaders, createAgent, createCredential } from '../support/management.js'
import { claimsOf } from '../support/oauth.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const guide = readFileSync(join(projectRoot, 'docs/guide/delegation.md'), 'utf8')
const blocks = (language: string): string[] => [...guide.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((match) => match[1] as string)
/** The sh block of the guide that holds `text` (the first one). */
function shBlock (text: string): string {
  const block = blocks('sh').find((code) => code.includes(text))
  if (block === undefined) throw new Error(`the guide has no sh block with ${text}`)
  return block
}
/** The json block of the guide that holds `text`, parsed. */
function jsonBlock (text: string): Record<string, any> {
  const block = blocks('json').find((code) => code.includes(text))
  if (block === undefined) throw new Error(`the guide has no json block with ${text}`)
  return JSON.parse(block)
}

const scratch = mkdtempSync(join(tmpdir(), 'agentidp-delegation-guide-'))
afterAll(() => { rmSync(scratch, { recursive: true, force: true }) })
const processes: ServerProcess[] = []
afterEach(() => { for (const process of processes.splice(0)) process.kill() })

/** Runs a shell block as the reader would (bash, curl, jq); its output parsed as JSON. */
async function sh (code: string, env: Record<string, string>): Promise<Record<string, any>> {
  const run = ServerProcess.command('bash', ['-c', `set -e\n${code}`], { PATH: process.env.PATH ?? '', ...env }, scratch)
  processes.push(run)
  expect(await run.exited, `${code}\n${run.stderr}${run.stdout}`).toBe(0)
  return JSON.parse(run.stdout)
}

async function withSecret (app: App, body: Record<string, unknown>): Promise<{ id: string, clientId: string, secret: string }> {
  const agent = await createAgent(app, body)
  const credential = await createCredential(app, agent.id)
  return { id: agent.id, clientId: credential.client_id, secret: credential.client_secret }
}

describe('docs/guide/delegation.md, followed to the letter', () => {
  it('grants a delegation, exchanges the assistant\'s token as the scheduler, and gets a workload JWT, each as the guide shows', async () => {
    const port = await freePort()
    const ISSUER = `http://127.0.0.1:${port}`
    const app = await context.build({ ISSUER })
    await app.listen({ host: '127.0.0.1', port })
    const assistant = await withSecret(app, { name: 'assistant', scopes: ['calendar:read', 'calendar:write', 'mail:read'] })
    const scheduler = await withSecret(app, { name: 'scheduler', resources: ['https://calendar.example.com'] })
    const ADMIN_TOKEN = ((await authHeaders(app)).authorization as string).slice('Bearer '.length)

    // Section 1: the delegation.
    const delegation = await sh(shBlock('/delegations'), { ISSUER, ADMIN_TOKEN, ASSISTANT_ID: assistant.id, SCHEDULER_ID: scheduler.id })
    expect(delegation).toMatchObject({ agent_id: assistant.id, actor_id: scheduler.id, scopes: ['calendar:read'] })
    // The guide's scheduler holds calendar:write too.
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${assistant.id}/delegations/${delegation.id}`, headers: await authHeaders(app) })
    await app.inject({ method: 'POST', url: `/api/v1/agents/${assistant.id}/delegations`, headers: await authHeaders(app), payload: { actor_id: scheduler.id, scopes: ['calendar:read', 'calendar:write'] } })

    // Section 2, hop 0 and hop 1: the claims the guide decodes are the claims the tokens carry.
    const hop0 = await sh(shBlock('grant_type=client_credentials "$ISSUER/oauth2/token"'), { ISSUER, ASSISTANT_CLIENT_ID: assistant.clientId, ASSISTANT_SECRET: assistant.secret })
    expect(Object.keys(claimsOf(hop0.access_token)).sort()).toEqual(Object.keys(jsonBlock('"jti": "0193a1e2-…-t0"')).concat('org_id').sort())
    const hop1 = await sh(shBlock('SCHEDULER_CLIENT_ID'), { ISSUER, SCHEDULER_CLIENT_ID: scheduler.clientId, SCHEDULER_SECRET: scheduler.secret, ASSISTANT_TOKEN: hop0.access_token })
    const response = jsonBlock('"issued_token_type": "urn:ietf:params:oauth:token-type:access_token"')
    expect(Object.keys(hop1).sort()).toEqual(Object.keys(response).sort())
    expect(hop1).toMatchObject({ issued_token_type: response.issued_token_type, token_type: 'Bearer', scope: 'calendar:read calendar:write' })
    const documented = jsonBlock('"jti": "0193a1f2-…-t1"')
    const claims = claimsOf(hop1.access_token)
    expect(Object.keys(claims).sort()).toEqual(Object.keys(documented).concat('org_id').sort())
    expect(claims).toMatchObject({ sub: assistant.id, aud: 'https://calendar.example.com', act: { sub: scheduler.id, iss: ISSUER, sub_profile: 'ai_agent' } })

    // Section 4: the audience on the agent, then the workload JWT with exactly the claims of the table.
    await sh(shBlock('"audiences": ["sts.amazonaws.com"]'), { ISSUER, ADMIN_TOKEN, AGENT_ID: scheduler.id })
    const jwt = await sh(shBlock('requested_token_type=urn:ietf:params:oauth:token-type:jwt -d audience=sts.amazonaws.com'), { ISSUER, CLIENT_ID: scheduler.clientId, CLIENT_SECRET: scheduler.secret })
    expect(Object.keys(jwt).sort()).toEqual(Object.keys(jsonBlock('"token_type": "N_A"')).sort())
    const table = guide.slice(guide.indexOf('| claim | value |')).split('\n\n')[0] as string
    const tableClaims = [...table.matchAll(/^\| `([a-z]+)` \|/gm)].map((match) => match[1])
    expect(Object.keys(claimsOf(jwt.access_token)).sort()).toEqual(tableClaims.sort())
    expect(claimsOf(jwt.access_token)).toMatchObject({ sub: scheduler.id, aud: 'sts.amazonaws.com', iss: ISSUER })
  })
})
