import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { buildApp, type App } from '../../src/app.js'
import { projectRoot } from '../../src/paths.js'
import { setupTestContext } from '../helper.js'
import { authHeaders, createAgent } from '../support/management.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'
import { startTestIssuer, type TestIssuer } from '../support/test-issuer.js'
import { localhostCertificate, type LocalhostCertificate } from '../support/tls.js'

const context = setupTestContext()
const guide = readFileSync(join(projectRoot, 'docs/guide/without-secrets.md'), 'utf8')
const blocks = (language: string): string[] => [...guide.matchAll(new RegExp(`^\`\`\`${language}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((match) => match[1] as string)
/** The js block the guide names `(name.mjs)` in the sentence before it. */
function snippet (name: string): string {
  const found = new RegExp(`\\(\`${name.replace('.', '\\.')}\`[^)]*\\):?\\n\\n\`\`\`js\\n([\\s\\S]*?)^\`\`\`$`, 'm').exec(guide)
  if (found === null) throw new Error(`the guide has no block named ${name}`)
  return found[1] as string
}
const shBlock = (containing: string): string => {
  const block = blocks('sh').find((code) => code.includes(containing))
  if (block === undefined) throw new Error(`the guide has no sh block with ${containing}`)
  return block
}
const hasCurl = spawnSync('curl', ['--version']).status === 0

// Snippets run as the reader runs them: files of their own, their imports resolved in this project's node_modules.
const scratch = mkdtempSync(join(tmpdir(), 'agentidp-without-secrets-'))
symlinkSync(join(projectRoot, 'node_modules'), join(scratch, 'node_modules'))
let tls: LocalhostCertificate
beforeAll(() => { tls = localhostCertificate() })
afterAll(() => { rmSync(scratch, { recursive: true, force: true }); tls.remove() })
const processes: ServerProcess[] = []
const issuers: TestIssuer[] = []
const closing: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const process of processes.splice(0)) process.kill()
  await Promise.all([...issuers.splice(0).map(async (issuer) => { await issuer.close() }), ...closing.splice(0).map(async (close) => { await close() })])
})

async function run (file: string, args: string[], env: Record<string, string>): Promise<string> {
  const child = ServerProcess.command(file, args, env, scratch)
  processes.push(child)
  expect(await child.exited, `${args.join(' ')}: ${child.stderr}${child.stdout}`).toBe(0)
  return child.stdout.trim()
}

async function runSnippet (name: string, env: Record<string, string> = {}): Promise<string> {
  writeFileSync(join(scratch, name), snippet(name))
  return await run(process.execPath, [name], env)
}

/** AgentIdP listening on a port of its own, over https when `certificate` is given, with `env` on top. */
async function listeningApp (env: Record<string, string> = {}, https = false): Promise<{ app: App, issuer: string }> {
  const port = await freePort()
  const issuer = `${https ? 'https' : 'http'}://localhost:${port}`
  const app = await buildApp(context.config({ ISSUER: issuer, PORT: String(port), ...env }), https ? { https: { key: tls.key, cert: tls.cert } } as never : {})
  closing.push(async () => { await app.close() })
  await app.listen({ port, host: 'localhost' })
  return { app, issuer }
}

describe('docs/guide/without-secrets.md, followed to the letter', () => {
  it('private_key_jwt with openid-client, and a statement the agent signs verified through its resolved DID', async () => {
    const { app, issuer } = await listeningApp({}, true)
    const agent = await createAgent(app, { name: 'payments', scopes: ['weather:read'] })
    const trust = { NODE_EXTRA_CA_CERTS: tls.certFile, CURL_CA_BUNDLE: tls.certFile }

    writeFileSync(join(scratch, 'make-key.mjs'), snippet('make-key.mjs'))
    let registered: Record<string, any>
    if (hasCurl) {
      const { authorization } = await authHeaders(app)
      registered = JSON.parse(await run('sh', ['-c', shBlock('node make-key.mjs')], { ...trust, ISSUER: issuer, AGENT_ID: agent.id, ADMIN_TOKEN: (authorization as string).slice(7) }))
    } else {
      const body = JSON.parse(await run(process.execPath, ['make-key.mjs'], {}))
      registered = (await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload: body })).json()
    }
    expect(registered).toMatchObject({ type: 'private_key_jwt', client_id: agent.client_id })

    const token = await runSnippet('agent.mjs', { ...trust, ISSUER: issuer, CLIENT_ID: agent.client_id })
    expect((await app.verifyAccessToken(token, app.defaultIssuer)).sub).toBe(agent.id)

    const signed = await runSnippet('sign.mjs', { AGENT_DID: agent.did })
    const said = await runSnippet('verify.mjs', { ...trust, SIGNED: signed })
    expect(said).toBe(`${agent.did as string} says: I, the payments agent, approve order 42`)
    // Once the key is revoked, the same signature no longer verifies.
    await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${registered.id as string}`, headers: await authHeaders(app) })
    writeFileSync(join(scratch, 'verify.mjs'), snippet('verify.mjs'))
    const after = ServerProcess.command(process.execPath, ['verify.mjs'], { ...trust, SIGNED: signed }, scratch)
    processes.push(after)
    expect(await after.exited).not.toBe(0)
    expect(after.stderr).toContain('is not a key')
  })

  it('a Kubernetes pod\'s projected service-account token, exchanged as the manifest and the snippet say', async () => {
    const cluster = await startTestIssuer('RS256')
    issuers.push(cluster)
    const { app, issuer } = await listeningApp({ FEDERATION_ALLOW_PRIVATE_NETWORKS: 'true' })
    const agent = await createAgent(app, { name: 'payments', scopes: ['payments:read', 'payments:write'] })
    const uid = '6a1f0c7e-8d5b-4b8e-9a37-2f6d4c1e0b55'
    const register = shBlock('system:serviceaccount:prod:payments')
    if (hasCurl) {
      const { authorization } = await authHeaders(app)
      const answer = JSON.parse(await run('sh', ['-c', register], { ISSUER: issuer, AGENT_ID: agent.id, ADMIN_TOKEN: (authorization as string).slice(7), CLUSTER_ISSUER: cluster.url, SA_UID: uid }))
      expect(answer).toMatchObject({ type: 'federated', issuer: cluster.url, subject: 'system:serviceaccount:prod:payments', claims: { 'kubernetes.io': { serviceaccount: { uid } } } })
    } else {
      await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.id}/credentials`, headers: await authHeaders(app), payload: { type: 'federated', issuer: cluster.url, subject: 'system:serviceaccount:prod:payments', claims: { 'kubernetes.io': { serviceaccount: { uid } } } } })
    }

    // The manifest projects a token for the ISSUER it gives the container, where TOKEN_FILE says.
    const pod = blocks('yaml').flatMap((block) => parseAllDocuments(block).map((document) => document.toJS())).find((document) => document?.kind === 'Pod')
    const container = pod.spec.containers[0]
    const env = Object.fromEntries(container.env.map((entry: { name: string, value: string }) => [entry.name, entry.value]))
    const projected = pod.spec.volumes[0].projected.sources[0].serviceAccountToken
    const mount = container.volumeMounts.find((each: { name: string }) => each.name === pod.spec.volumes[0].name)
    expect(projected.audience).toBe(env.ISSUER)
    expect(env.TOKEN_FILE).toBe(`${mount.mountPath as string}/${projected.path as string}`)
    expect(pod.spec.serviceAccountName).toBe('payments')

    // What the kubelet would write there for this pod, for this AgentIdP.
    const saToken = await cluster.sign({
      sub: `system:serviceaccount:${pod.metadata.namespace as string}:${pod.spec.serviceAccountName as string}`,
      aud: [issuer],
      nbf: Math.floor(Date.now() / 1000),
      'kubernetes.io': { namespace: pod.metadata.namespace, serviceaccount: { name: pod.spec.serviceAccountName, uid }, pod: { name: pod.metadata.name, uid: '0b5d3a4e-4c1e-4f41-9d5e-3c2f1a0b9e77' } }
    }, { lifetimeS: projected.expirationSeconds })
    writeFileSync(join(scratch, 'token'), saToken)
    const token = await runSnippet('exchange.mjs', { ISSUER: issuer, TOKEN_FILE: join(scratch, 'token') })
    expect(await app.verifyAccessToken(token, app.defaultIssuer)).toMatchObject({ sub: agent.id, client_id: agent.client_id, scope: 'payments:read' })
  })

  it('a GitHub Actions job\'s step, run with the environment GitHub gives it', async (test) => {
    if (!hasCurl) test.skip('the step runs curl')
    const github = await startTestIssuer('RS256')
    issuers.push(github)
    const { app, issuer } = await listeningApp({ FEDERATION_ALLOW_PRIVATE_NETWORKS: 'true' })
    const agent = await createAgent(app, { name: 'deployer', scopes: ['deploy:write', 'deploy:read'] })
    const { authorization } = await authHeaders(app)
    // The guide's registration, with this test's issuer standing in for token.actions.githubusercontent.com.
    const register = shBlock('token.actions.githubusercontent.com').replace('https://token.actions.githubusercontent.com', github.url)
    expect(JSON.parse(await run('sh', ['-c', register], { ISSUER: issuer, AGENT_ID: agent.id, ADMIN_TOKEN: (authorization as string).slice(7) })).type).toBe('federated')

    // GitHub's token request endpoint: a GitHub-shaped token for the audience asked, to the bearer of the request token.
    const requestToken = 'request-token-of-this-run'
    const tokenService = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://localhost')
      if (request.headers.authorization !== `bearer ${requestToken}` || url.searchParams.get('api-version') !== '2.0') { response.statusCode = 401; response.end(); return }
      void github.sign({ sub: 'repo:acme/api:ref:refs/heads/main', aud: url.searchParams.get('audience'), repository: 'acme/api', repository_id: '892341', ref: 'refs/heads/main', workflow: 'deploy' })
        .then((value) => { response.setHeader('content-type', 'application/json'); response.end(JSON.stringify({ count: 1, value })) })
    })
    await new Promise<void>((resolve) => tokenService.listen(0, '127.0.0.1', resolve))
    closing.push(async () => { tokenService.closeAllConnections(); await new Promise<void>((resolve) => tokenService.close(() => resolve())) })

    const workflow = parseAllDocuments(blocks('yaml').find((block) => block.includes('id-token: write')) as string)[0]?.toJS()
    expect(workflow.jobs.deploy.permissions['id-token']).toBe('write')
    const step = workflow.jobs.deploy.steps[0]
    const githubEnv = join(scratch, 'github-env')
    writeFileSync(githubEnv, '')
    await run('bash', ['-e', '-c', step.run], {
      ...step.env,
      ISSUER: issuer,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: requestToken,
      ACTIONS_ID_TOKEN_REQUEST_URL: `http://127.0.0.1:${(tokenService.address() as AddressInfo).port}/_apis/token?api-version=2.0`,
      GITHUB_ENV: githubEnv
    })
    const accessToken = /^ACCESS_TOKEN=(.+)$/m.exec(readFileSync(githubEnv, 'utf8'))?.[1] as string
    expect(await app.verifyAccessToken(accessToken, app.defaultIssuer)).toMatchObject({ sub: agent.id, scope: 'deploy:write' })
  })
})
