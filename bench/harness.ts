/**
 * What the benchmarks share (bench/run.ts, bench/webhooks.ts, bench/capacity.ts): starting our server as in
 * production, seeding agents, reading a process's CPU and memory from /proc, and rewriting one section of
 * docs/performance.md while keeping the others. Importing it runs nothing.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type autocannon from 'autocannon'
import type postgres from 'postgres'
import { newId } from '../src/ids.js'
import { projectRoot } from '../src/paths.js'
import { SERVER_NODE_FLAGS, SERVER_PROCESS_ENV } from '../src/runtime.js'
import { generateClientSecret, hashSecret } from '../src/secrets.js'

export const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`

const CLOCK_TICKS_PER_S = 100

/** CPU time (user + system, ms) so far of a process (all its threads), or of one thread: /proc/{pid}/task/{tid}. */
export function cpuMsOf (pid: number, tid?: number): number {
  try {
    // Fields after the command (which may hold spaces, hence after the last ')'): utime and stime are the 12th and 13th.
    const fields = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ').at(-1)?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS_PER_S
  } catch {
    return 0 // the process ended
  }
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb (pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024)
}

export async function waitForHttp (url: string, child: ChildProcess, output: () => string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`server exited: ${output()}`)
    try {
      if ((await fetch(url)).ok) return
    } catch {}
    await sleep(100)
  }
  throw new Error(`${url} did not answer: ${output()}`)
}

/** A child process (node, unless `command` says otherwise) in the project's root, keeping the last 4,000 characters it printed. */
export function startProcess (args: string[], env: Record<string, string>, command: string = process.execPath): { child: ChildProcess, output: () => string } {
  let output = ''
  const child = spawn(command, args, { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
  child.stderr?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) })
  return { child, output: () => output }
}

export interface ServerOptions {
  port: number
  databaseUrl: string
  redisUrl: string
  keys: { privateKey: string, publicKey: string }
  issuer?: string
  /** More environment (KEY_ENCRYPTION_KEY, BOOTSTRAP_CLIENT_ID, METRICS_TOKEN…). */
  env?: Record<string, string>
  /** More node flags, before the script (BENCH_NODE_ARGS). */
  nodeArgs?: string[]
}

/** Our built server (dist/), started as in production (src/runtime.ts), rate limits raised out of the way but still run. */
export function startServer (options: ServerOptions): { child: ChildProcess, output: () => string } {
  return startProcess([...SERVER_NODE_FLAGS, ...(options.nodeArgs ?? []), 'dist/src/server.js'], {
    ...SERVER_PROCESS_ENV,
    NODE_ENV: 'production', PORT: String(options.port), HOST: '127.0.0.1', LOG_LEVEL: 'warn',
    DATABASE_URL: options.databaseUrl, REDIS_URL: options.redisUrl, JWT_PRIVATE_KEY: options.keys.privateKey, JWT_PUBLIC_KEY: options.keys.publicKey,
    ISSUER: options.issuer ?? `http://127.0.0.1:${options.port}`,
    // Raised out of the way, not off: the limiter still runs on every request.
    RATE_LIMIT_TOKEN_PER_MIN: '10000000', RATE_LIMIT_API_PER_MIN: '10000000', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '10000000',
    ...options.env
  })
}

export interface Agent { id: string, clientId: string, secret: string }

/** `count` agents with one secret credential each (argon2id hashes), inserted by SQL. */
export async function createAgents (sql: postgres.Sql, count: number): Promise<Agent[]> {
  const agents: Agent[] = []
  for (let i = 0; i < count; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, count - i) }, async () => {
      const id = newId()
      const credentialId = newId()
      const secret = generateClientSecret(credentialId)
      return { id, clientId: `bench_${id.slice(-12)}`, secret, credentialId, hash: await hashSecret(secret) }
    }))
    await sql`insert into agents ${sql(batch.map((a) => ({ id: a.id, client_id: a.clientId, name: 'bench agent', scopes: ['bench:read'] })))}`
    await sql`insert into credentials ${sql(batch.map((a) => ({ id: a.credentialId, agent_id: a.id, secret_hash: a.hash })))}`
    agents.push(...batch.map(({ id, clientId, secret }) => ({ id, clientId, secret })))
  }
  return agents
}

export const COMMIT = (() => {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: projectRoot, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
})()

export const PERFORMANCE_MD = join(projectRoot, 'docs', 'performance.md')

/**
 * Replaces the section under `heading` in docs/performance.md (up to the next "## " heading), or adds it before
 * the section `before` names (at the end when there is none). Every other section stays as it was.
 */
export function writeSection (heading: string, section: string, before?: string): void {
  const current = existsSync(PERFORMANCE_MD) ? readFileSync(PERFORMANCE_MD, 'utf8') : '# Performance\n'
  const start = current.indexOf(`\n${heading}\n`) + 1
  if (start > 0) {
    const next = current.indexOf('\n## ', start + heading.length)
    writeFileSync(PERFORMANCE_MD, current.slice(0, start) + section + (next < 0 ? '' : `\n${current.slice(next + 1)}`))
  } else {
    const at = before === undefined ? -1 : current.indexOf(`\n${before}\n`) + 1
    writeFileSync(PERFORMANCE_MD, at <= 0 ? `${current.trimEnd()}\n\n${section}` : `${current.slice(0, at)}${section}\n${current.slice(at)}`)
  }
}

/** CPU time so far (ms) of the PostgreSQL backends connected to `sql`'s database, but the one asking. */
export async function backendsCpuMs (sql: postgres.Sql): Promise<number> {
  const backends = await sql<Array<{ pid: number }>>`select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`
  return backends.reduce((sum, { pid }) => sum + cpuMsOf(pid), 0)
}

/** An agent that asks for its tokens at `path` (its organization's /o/{slug}/oauth2/token, or /oauth2/token). */
export interface OrganizationAgent { path: string, clientId: string, secret: string }

/**
 * One token for each agent, four at a time, asking again after a refusal (503 while the hashing queue is full,
 * 429): every agent's secret is verified and cached when this resolves.
 */
export async function verifyEach (base: string, agents: OrganizationAgent[]): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < agents.length) {
      const agent = agents[next++] as OrganizationAgent
      for (let attempt = 0; ; attempt++) {
        const response = await fetch(`${base}${agent.path}`, { method: 'POST', headers: { authorization: basic(agent.clientId, agent.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=bench%3Aread' })
        await response.arrayBuffer()
        if (response.status === 200) break
        if (attempt === 20) throw new Error(`${agent.clientId}: ${response.status} after 20 attempts`)
        await sleep(100)
      }
    }
  }))
}

/** Token requests by client_secret_basic, each from the next of `agents` in turn (each to its organization's issuer). */
export function spreadTokenRequests (base: string, agents: OrganizationAgent[]): autocannon.Options {
  let next = 0
  return {
    url: base, method: 'POST',
    requests: [{
      setupRequest: (request: autocannon.Request) => {
        const agent = agents[next++ % agents.length] as OrganizationAgent
        return { ...request, path: agent.path, headers: { authorization: basic(agent.clientId, agent.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=bench%3Aread' }
      }
    }]
  }
}
