/**
 * `npm run bench:webhooks`: what webhook delivery costs the token endpoint, and how fast it delivers. The server
 * (bench/webhooks-server.ts), a local receiver (bench/webhooks-receiver.mjs, node:http, 204) and autocannon run in
 * three processes on 127.0.0.1. Rounds of BENCH_DURATION_S (default 5) of client_credentials requests over 10
 * connections alternate, BENCH_ROUNDS times (default 3): no subscription; 10 subscriptions to event types the load
 * does not produce; 10 subscriptions to every event (each token.issued delivered 10 times), after which the bench
 * waits for the backlog to be delivered (a minute at most). Each phase deletes its subscriptions after it. Reports each phase's token throughput against the no-subscription rounds, the deliveries a second (from
 * the start of a round until its backlog is delivered) and the lag p99 from an event to its first attempt under
 * load. BENCH_CPU_PROF=<dir> writes the server's CPU profile there (node --cpu-prof).
 * BENCH_DATABASE_URL as in bench/run.ts; BENCH_REDIS_URL (default redis://127.0.0.1:6379/15, flushed first).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { createClient } from 'redis'
import { projectRoot } from '../src/paths.js'
import { SERVER_NODE_FLAGS, SERVER_PROCESS_ENV } from '../src/runtime.js'
import { createBenchDatabase } from './database.js'
import { writeSection } from './harness.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
const CPU_PROF = process.env.BENCH_CPU_PROF
const SUBSCRIPTIONS = 10
const NOTE = 'Ten subscriptions to every event make ten signed HTTP deliveries of each token, and here the receiver shares the two cores: each costs about what a token request does. The worker sends a subscription\'s events one after the other over a kept-alive connection and writes them a batch at a time (one statement for the batch\'s delivery rows, one for the cursor); while the server is saturated (two or more requests in flight, or its timers firing late because the CPU is taken) deliveries yield to it, one at a time and a tenth of the time at most, so the backlog builds up during the load (the lag) and is delivered after it (the deliveries a second). On a machine this loaded the rounds vary by ±30%: read the per-round ratios.'
export const WEBHOOKS_HEADING = '## Webhooks'
// bench/audit-query.ts's heading (importing it would run that benchmark): this section goes before it.
const AUDIT_HEADING = '## Audit queries'

interface Server { base: string, authorization: string, clientId: string, secret: string }

/** The receiver's process: its URL, and its count and lags on request. */
async function startReceiver (): Promise<{ url: string, count: () => Promise<number>, lags: (from: number) => Promise<number[]>, close: () => void }> {
  const child = fork(join(projectRoot, 'bench', 'webhooks-receiver.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const ask = async <T>(message: unknown, key: string): Promise<T> => await new Promise((resolve) => {
    const listener = (answer: Record<string, unknown>): void => {
      if (key in answer) { child.off('message', listener); resolve(answer[key] as T) }
    }
    child.on('message', listener)
    if (message !== undefined) child.send(message as string)
  })
  const port = await ask<number>(undefined, 'port')
  return {
    url: `http://127.0.0.1:${port}/hook`,
    count: async () => await ask<number>('count', 'count'),
    lags: async (from) => await ask<number[]>({ lagsFrom: from }, 'lags'),
    close: () => { child.disconnect() }
  }
}

/** The server's process, once it has printed what the bench needs. */
async function startServer (databaseUrl: string): Promise<{ server: Server, child: ChildProcess }> {
  const profile = CPU_PROF === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`]
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, ...profile, '--import', 'tsx', join(projectRoot, 'bench', 'webhooks-server.ts')], {
    cwd: projectRoot, env: { ...process.env, ...SERVER_PROCESS_ENV, DATABASE_URL: databaseUrl, REDIS_URL }, stdio: ['ignore', 'pipe', 'inherit']
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  for await (const line of lines) {
    if (line.startsWith('{')) return { server: JSON.parse(line) as Server, child }
  }
  throw new Error('the bench server exited before it was ready')
}

async function tokenLoad (server: Server, options: { duration?: number, amount?: number } = { duration: DURATION_S }): Promise<{ rps: number, ok: number, failed: number, p99: number }> {
  const result = await autocannon({
    url: `${server.base}/oauth2/token`,
    method: 'POST',
    connections: 10,
    ...options,
    headers: { authorization: `Basic ${Buffer.from(`${server.clientId}:${server.secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=bench%3Aread'
  })
  return { rps: result.requests.average, ok: result['2xx'], failed: result.non2xx + result.errors + result.timeouts, p99: result.latency.p99 }
}

async function api (server: Server, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.base}${path}`, {
    method,
    headers: { authorization: server.authorization, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
  return response.status === 204 ? {} : await response.json() as Record<string, unknown>
}

async function subscribe (server: Server, url: string, events: string[]): Promise<string[]> {
  const ids: string[] = []
  for (let i = 0; i < SUBSCRIPTIONS; i++) ids.push((await api(server, 'POST', '/api/v1/webhooks', { url, events })).id as string)
  return ids
}

async function unsubscribe (server: Server, ids: string[]): Promise<void> {
  for (const id of ids) await api(server, 'DELETE', `/api/v1/webhooks/${id}`)
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}
const sum = (values: number[]): number => values.reduce((total, value) => total + value, 0)

async function main (): Promise<void> {
  const database = await createBenchDatabase('agentidp_bench_webhooks', 1)
  const redis = createClient({ url: REDIS_URL })
  await redis.connect()
  await redis.flushDb()
  await redis.close()
  const receiver = await startReceiver()
  let child: ChildProcess | undefined
  const load: number[] = [loadavg()[0] ?? 0]
  try {
    const started = await startServer(database.url)
    child = started.child
    const { server } = started
    // Warm-up: the client's verification is cached, the JIT is warm.
    await tokenLoad(server, { amount: 2000 })

    const none: Array<Awaited<ReturnType<typeof tokenLoad>>> = []
    const idle: typeof none = []
    const busy: typeof none = []
    const lagsUnderLoad: number[] = []
    let delivered = 0
    let deliveringS = 0
    let deliveredDuringLoad = 0
    for (let round = 1; round <= ROUNDS; round++) {
      none.push(await tokenLoad(server))
      load.push(loadavg()[0] ?? 0)
      const idleIds = await subscribe(server, receiver.url, ['agent.created', 'credential.revoked'])
      idle.push(await tokenLoad(server))
      await unsubscribe(server, idleIds)
      const ids = await subscribe(server, receiver.url, ['*'])
      const before = await receiver.count()
      const startedAt = Date.now()
      const result = await tokenLoad(server)
      busy.push(result)
      const duringLoad = (await receiver.count()) - before
      lagsUnderLoad.push(...await receiver.lags(before))
      // Drain the backlog (every token.issued of the round, SUBSCRIPTIONS times), for a minute at most.
      const expected = result.ok * SUBSCRIPTIONS
      const deadline = Date.now() + 60_000
      let count = await receiver.count()
      while (count - before < expected && Date.now() < deadline) {
        await sleep(100)
        count = await receiver.count()
      }
      const roundS = (Date.now() - startedAt) / 1000
      delivered += count - before
      deliveredDuringLoad += duringLoad
      deliveringS += roundS
      load.push(loadavg()[0] ?? 0)
      await unsubscribe(server, ids)
      console.log(`round ${round}: no subscription ${none.at(-1)?.rps.toFixed(0)} tokens/s; no matching event ${idle.at(-1)?.rps.toFixed(0)}; ${SUBSCRIPTIONS} subscriptions to every event ${result.rps.toFixed(0)} tokens/s ` +
        `(${(result.rps / (none.at(-1)?.rps ?? 1)).toFixed(2)}x), ${duringLoad} delivered during the round, ${count - before} of ${expected} after ${roundS.toFixed(1)} s`)
    }
    const noneRps = sum(none.map((r) => r.rps)) / none.length
    const busyRps = sum(busy.map((r) => r.rps)) / busy.length
    const idleRps = sum(idle.map((r) => r.rps)) / idle.length
    const ratio = (value: number): string => `${(value / noneRps).toFixed(2)}×`
    const deliveriesPerSecond = delivered / deliveringS
    const loadRange = `${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)}`
    console.log(`ratio ${ratio(busyRps)}; ${deliveriesPerSecond.toFixed(0)} deliveries/s; lag p99 ${percentile(lagsUnderLoad, 0.99).toFixed(0)} ms; load average ${loadRange}`)
    writeWebhooksSection([
      '| phase | tokens/s | of no subscription | token p99 | failed requests |',
      '| --- | --- | --- | --- | --- |',
      `| no subscription (${ROUNDS} rounds) | ${noneRps.toFixed(0)} | 1.00× | ${Math.max(...none.map((r) => r.p99))} ms | ${sum(none.map((r) => r.failed))} |`,
      `| ${SUBSCRIPTIONS} subscriptions, no matching event (${ROUNDS} rounds) | ${idleRps.toFixed(0)} | ${ratio(idleRps)} (rounds: ${idle.map((r, i) => (r.rps / (none[i]?.rps ?? 1)).toFixed(2)).join(', ')}) | ${Math.max(...idle.map((r) => r.p99))} ms | ${sum(idle.map((r) => r.failed))} |`,
      `| ${SUBSCRIPTIONS} subscriptions to every event (${ROUNDS} rounds) | ${busyRps.toFixed(0)} | ${ratio(busyRps)} (rounds: ${busy.map((r, i) => (r.rps / (none[i]?.rps ?? 1)).toFixed(2)).join(', ')}) | ${Math.max(...busy.map((r) => r.p99))} ms | ${sum(busy.map((r) => r.failed))} |`,
      '',
      NOTE,
      '',
      `Deliveries: ${deliveriesPerSecond.toFixed(0)} a second to the local receiver (${delivered} in ${deliveringS.toFixed(1)} s, from the start of each round with subscriptions until its backlog was delivered; ${(deliveredDuringLoad / (ROUNDS * DURATION_S)).toFixed(0)} a second during the load). Lag from event to first attempt under load: p50 ${percentile(lagsUnderLoad, 0.5).toFixed(0)} ms, p99 ${percentile(lagsUnderLoad, 0.99).toFixed(0)} ms. Load average (1 min) during the run: ${loadRange} on 2 cores.`
    ].join('\n'))
  } finally {
    if (child !== undefined) {
      const exited = new Promise((resolve) => child?.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
    receiver.close()
    await database.drop()
  }
}

/** Replaces the webhooks section of docs/performance.md, or adds it before the audit one. */
function writeWebhooksSection (table: string): void {
  writeSection(WEBHOOKS_HEADING, `${WEBHOOKS_HEADING}\n\nMeasured by \`npm run bench:webhooks\` (bench/webhooks.ts): the server, a local receiver and autocannon in three processes on 127.0.0.1 (so the phases compare with each other, not with the table above), ${DURATION_S}-second rounds of client_credentials requests over 10 connections, alternating without and with ${SUBSCRIPTIONS} subscriptions, PostgreSQL and Redis on the same machine. Target (issue 17): ${SUBSCRIPTIONS} active subscriptions cost the token endpoint at most 10%. ${new Date().toISOString()}.\n\n${table}\n`, AUDIT_HEADING)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
