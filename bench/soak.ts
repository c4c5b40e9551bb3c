import { DEFAULT_ORG_ID } from '../src/database.js'
/**
 * `npm run soak`: mixed traffic (tokens, introspection, revocation, management calls) against two replicas on one
 * PostgreSQL and Redis, for SOAK_SECONDS (default 300). Passes when no request failed, memory stayed flat and the
 * audit chain verifies afterwards; then a flood of wrong secrets for one client_id (FLOOD_RATE requests/s, default
 * 1000, from a separate process) runs while other clients ask for tokens, whose p99 must stay under 50 ms.
 * Exits 1 on any failure.
 *
 * BENCH_DATABASE_URL and BENCH_REDIS_URL as in bench/run.ts. Traffic goes to 127.0.0.1 only; every loop is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { verifyChain } from '../plugins/audit/index.js'
import { generateSigningKeyPair } from '../src/embedded.js'
import { projectRoot } from '../src/paths.js'
import { SERVER_NODE_FLAGS, SERVER_PROCESS_ENV } from '../src/runtime.js'
import { createBenchDatabase } from './database.js'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 300)
const WORKERS = Number(process.env.SOAK_WORKERS ?? 16)
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
const PORTS = [3311, 3312]
const ADMIN = { id: 'soak-admin', secret: randomBytes(32).toString('base64url') }

const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
const form = (values: Record<string, string>): string => new URLSearchParams(values).toString()
const rssMb = (pid: number): number => Math.round(Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024)

interface Client { id: string, secret: string, agentId: string }

async function call (url: string, init: RequestInit): Promise<Response> {
  return await fetch(url, { ...init, signal: AbortSignal.timeout(5000) })
}

async function adminToken (base: string): Promise<string> {
  const response = await call(`${base}/oauth2/token`, { method: 'POST', headers: { authorization: basic(ADMIN.id, ADMIN.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: form({ grant_type: 'client_credentials' }) })
  if (!response.ok) throw new Error(`admin token: ${response.status} ${await response.text()}`)
  return ((await response.json()) as { access_token: string }).access_token
}

async function createClientAgent (base: string, bearer: string, scopes: string[]): Promise<Client> {
  const agent = await (await call(`${base}/api/v1/agents`, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'soak agent', scopes }) })).json() as { id: string }
  const credential = await (await call(`${base}/api/v1/agents/${agent.id}/credentials`, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' }, body: '{}' })).json() as { client_id: string, client_secret: string }
  return { id: credential.client_id, secret: credential.client_secret, agentId: agent.id }
}

async function tokenFor (base: string, client: Client): Promise<Response> {
  return await call(`${base}/oauth2/token`, { method: 'POST', headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: form({ grant_type: 'client_credentials' }) })
}

async function main (): Promise<void> {
  const database = await createBenchDatabase('agentidp_soak')
  const { sql } = database
  const redis = createClient({ url: REDIS_URL })
  await redis.connect()
  await redis.flushDb()
  const children: ChildProcess[] = []
  let failed = false
  try {
    const keys = generateSigningKeyPair()
    for (const port of PORTS) {
      const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, 'dist/src/server.js'], {
        cwd: projectRoot,
        stdio: 'ignore',
        env: {
          ...process.env, ...SERVER_PROCESS_ENV, NODE_ENV: 'production', PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ISSUER: 'http://127.0.0.1:3311',
          DATABASE_URL: database.url, REDIS_URL, JWT_PRIVATE_KEY: keys.privateKey, JWT_PUBLIC_KEY: keys.publicKey,
          BOOTSTRAP_CLIENT_ID: ADMIN.id, BOOTSTRAP_CLIENT_SECRET: ADMIN.secret,
          RATE_LIMIT_TOKEN_PER_MIN: '10000000', RATE_LIMIT_API_PER_MIN: '10000000', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '20'
        }
      })
      children.push(child)
      for (let attempt = 0; attempt < 100; attempt++) {
        if ((await call(`http://127.0.0.1:${port}/health/ready`, {}).catch(() => undefined))?.ok === true) break
        await sleep(200)
      }
    }
    const bases = PORTS.map((port) => `http://127.0.0.1:${port}`)
    const bearer = await adminToken(bases[0] as string)
    const clients = await Promise.all(Array.from({ length: 8 }, async () => await createClientAgent(bases[0] as string, bearer, ['soak:read'])))
    const resourceServer = await createClientAgent(bases[0] as string, bearer, ['tokens:introspect'])

    const counts = { ok: 0, failed: 0 }
    const failures = new Map<string, number>()
    const note = (operation: string, response: Response | undefined): void => {
      if (response?.ok === true) counts.ok++
      else {
        counts.failed++
        const key = `${operation}: ${response?.status ?? 'no answer'}`
        failures.set(key, (failures.get(key) ?? 0) + 1)
      }
    }
    const deadline = Date.now() + SECONDS * 1000
    const rss: number[][] = children.map(() => [])
    const sampler = setInterval(() => children.forEach((child, i) => rss[i]?.push(rssMb(child.pid as number))), 5000)

    await Promise.all(Array.from({ length: WORKERS }, async (_, worker) => {
      let n = 0
      while (Date.now() < deadline) {
        const base = bases[(worker + n++) % bases.length] as string
        const other = bases[(worker + n) % bases.length] as string
        const client = clients[n % clients.length] as Client
        const roll = n % 10
        try {
          const issued = await tokenFor(base, client)
          note('token', issued)
          const token = issued.ok ? ((await issued.json()) as { access_token: string }).access_token : ''
          if (roll < 5) {
            // Introspection on the other replica: active, unless the token is revoked first.
            const revoke = roll === 0
            if (revoke) note('revoke', await call(`${base}/oauth2/revoke`, { method: 'POST', headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: form({ token }) }))
            const introspection = await call(`${other}/oauth2/introspect`, { method: 'POST', headers: { authorization: basic(resourceServer.id, resourceServer.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: form({ token }) })
            const active = introspection.ok ? ((await introspection.json()) as { active: boolean }).active : undefined
            note(revoke ? 'introspect after revoke' : 'introspect', introspection.ok && active === !revoke ? introspection : undefined)
          } else if (roll < 8) {
            note('list agents', await call(`${other}/api/v1/agents?limit=20`, { headers: { authorization: `Bearer ${bearer}` } }))
          } else {
            note('usage', await call(`${base}/api/v1/agents/${client.agentId}/usage`, { headers: { authorization: `Bearer ${bearer}` } }))
          }
        } catch {
          note('request', undefined)
        }
      }
    }))
    clearInterval(sampler)

    const chain = await verifyChain(sql as never, DEFAULT_ORG_ID)
    console.log(`soak: ${SECONDS} s, ${WORKERS} workers, 2 replicas: ${counts.ok} ok, ${counts.failed} failed`)
    for (const [key, count] of failures) console.log(`  failed ${key} × ${count}`)
    rss.forEach((samples, i) => {
      const third = Math.max(1, Math.floor(samples.length / 3))
      const early = Math.max(...samples.slice(0, third))
      const late = Math.max(...samples.slice(-third))
      console.log(`  replica ${i + 1} RSS MB: ${samples.join(' ')} (max of the first third ${early}, of the last third ${late})`)
      // Flat: the last third peaks no more than 20% above the first third.
      if (late > early * 1.2) { failed = true; console.log('  memory grew') }
    })
    console.log(chain.ok ? `  audit chain: ${chain.verified} events verified` : `  audit chain BROKEN at seq ${chain.seq}: ${chain.reason}`)
    if (counts.failed > 0 || !chain.ok) failed = true

    // Flood: wrong secrets for one client_id, FLOOD_RATE requests/s from another process (autocannon), while the
    // other clients keep asking for tokens from this one. Past the failure limit the flood is refused before any
    // hash, so it costs a Redis read per request, not an argon2 computation.
    const victim = clients[0] as Client
    const floodRate = Number(process.env.FLOOD_RATE ?? 1000)
    const flood = spawn(process.execPath, [join(projectRoot, 'node_modules', 'autocannon', 'autocannon.js'), '-c', '8', '-d', '15', '-R', String(floodRate), '-m', 'POST',
      '-H', `authorization=${basic(victim.id, `${victim.secret.slice(0, 33)}${'x'.repeat(43)}`)}`, '-H', 'content-type=application/x-www-form-urlencoded',
      '-b', 'grant_type=client_credentials', `${bases[0] as string}/oauth2/token`], { stdio: 'ignore' })
    const floodDone = new Promise((resolve) => flood.once('exit', resolve))
    await sleep(2000)
    const floodUntil = Date.now() + 12_000
    const latencies: number[] = []
    await Promise.all(Array.from({ length: 4 }, async (_, i) => {
      while (Date.now() < floodUntil) {
        const started = performance.now()
        const response = await tokenFor(bases[0] as string, clients[1 + (i % (clients.length - 1))] as Client).catch(() => undefined)
        if (response?.ok === true) latencies.push(performance.now() - started)
      }
    }))
    await floodDone
    latencies.sort((a, b) => a - b)
    const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? Infinity
    console.log(`flood of ${floodRate} wrong-secret requests/s for one client_id: other clients' token p99 ${p99.toFixed(1)} ms over ${latencies.length} requests (target ≤ 50 ms)`)
    if (p99 > 50) failed = true
  } finally {
    for (const child of children) child.kill('SIGTERM')
    await sleep(1000)
    await redis.flushDb()
    await redis.close()
    await database.drop()
  }
  console.log(failed ? 'soak: FAILED' : 'soak: passed')
  process.exitCode = failed ? 1 : 0
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
