/**
 * `npm run bench:webhooks`: what webhook delivery costs the token endpoint, and how fast it delivers. The server, a
 * local receiver (node:http, 204) and autocannon run in this one process on 127.0.0.1, so the numbers compare the
 * phases with each other, not with bench/run.ts. Phases, each BENCH_DURATION_S (default 10) of client_credentials
 * requests over 10 connections: no subscription; 10 subscriptions to event types the load does not produce (the
 * worker runs, nothing matches); 10 subscriptions to every event (each token.issued delivered 10 times). Reports the
 * token throughput of each, the deliveries a second, and the lag p99 from an event to its first attempt under load.
 * BENCH_DATABASE_URL as in bench/run.ts; BENCH_REDIS_URL (default redis://127.0.0.1:6379/15, flushed first).
 */
import { createServer } from 'node:http'
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import autocannon from 'autocannon'
import { createClient } from 'redis'
import { buildApp, type App } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { projectRoot } from '../src/paths.js'
import { mintAccessToken } from '../test/support/tokens.js'
import { createBenchDatabase } from './database.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10)
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
const SUBSCRIPTIONS = 10
const NOTE = 'Subscriptions cost the token endpoint nothing while the load produces no event they name (the worker wakes only when this replica serves a subscription, at most every 50 ms, and one transaction a round covers every subscription). A subscription to every event receives each `token.issued`: ten of them make ten signed deliveries of every token, one at a time per subscription (deliveries keep chain order), about three short transactions and one HTTP request each. In this one-process measurement the worker then takes a large share of the CPU the token endpoint had, falls behind and catches up after the load; the 10% target holds for subscriptions to the event types operators react to, not for ten subscriptions to `token.issued` at full token load. Subscribe to the types you need.'
export const WEBHOOKS_HEADING = '## Webhooks'
// bench/audit-query.ts's heading (importing it would run that benchmark): this section goes before it.
const AUDIT_HEADING = '## Audit queries'

/** A receiver that answers 204 and notes, per webhook-id and subscription, when its first attempt arrived. */
async function startReceiver (): Promise<{ url: string, lagsMs: number[], count: () => number, close: () => Promise<void> }> {
  const lagsMs: number[] = []
  let count = 0
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      count += 1
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { timestamp: string }
      lagsMs.push(Date.now() - Date.parse(body.timestamp))
      response.writeHead(204).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    lagsMs,
    count: () => count,
    close: async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) }
  }
}

async function tokenLoad (base: string, clientId: string, secret: string): Promise<{ rps: number, non2xx: number }> {
  const result = await autocannon({
    url: `${base}/oauth2/token`,
    method: 'POST',
    connections: 10,
    duration: DURATION_S,
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=bench%3Aread'
  })
  return { rps: result.requests.average, non2xx: result.non2xx + result.errors + result.timeouts }
}

async function subscribe (app: App, authorization: string, url: string, events: string[]): Promise<void> {
  for (let i = 0; i < SUBSCRIPTIONS; i++) {
    const response = await app.inject({ method: 'POST', url: '/api/v1/webhooks', headers: { authorization }, payload: { url, events } })
    if (response.statusCode !== 201) throw new Error(`subscribe: ${response.statusCode} ${response.body}`)
  }
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

async function main (): Promise<void> {
  const database = await createBenchDatabase('agentidp_bench_webhooks', 1)
  const redis = createClient({ url: REDIS_URL })
  await redis.connect()
  await redis.flushDb()
  await redis.close()
  const receiver = await startReceiver()
  let app: App | undefined
  try {
    app = await buildApp(loadConfig({
      NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: database.url, REDIS_URL, DATA_DIR: mkdtempSync(join(tmpdir(), 'agentidp-bench-')),
      RATE_LIMIT_TOKEN_PER_MIN: '10000000', RATE_LIMIT_API_PER_MIN: '0', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '10000000',
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true'
    }))
    await app.listen({ port: 0, host: '127.0.0.1' })
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const authorization = `Bearer ${await mintAccessToken(app, { scopes: ['agents:write', 'webhooks:write', 'audit:read'] })}`
    const agent = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { authorization }, payload: { name: 'bench', scopes: ['bench:read'] } })
    const credential = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.json().id as string}/credentials`, headers: { authorization }, payload: {} })
    const { client_id: clientId, client_secret: secret } = credential.json() as { client_id: string, client_secret: string }
    // Warm-up: the client's verification is cached, the JIT is warm.
    await autocannon({ url: `${base}/oauth2/token`, method: 'POST', connections: 4, amount: 1000, headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=bench%3Aread' })

    const none = await tokenLoad(base, clientId, secret)
    console.log(`no subscription: ${none.rps.toFixed(0)} tokens/s`)
    await subscribe(app, authorization, receiver.url, ['agent.created', 'credential.revoked'])
    const idle = await tokenLoad(base, clientId, secret)
    console.log(`${SUBSCRIPTIONS} subscriptions, no matching event: ${idle.rps.toFixed(0)} tokens/s`)
    await subscribe(app, authorization, receiver.url, ['*'])
    const before = receiver.count()
    const started = Date.now()
    const busy = await tokenLoad(base, clientId, secret)
    const underLoad = receiver.lagsMs.slice(before)
    const deliveredUnderLoad = receiver.count() - before
    console.log(`${SUBSCRIPTIONS} subscriptions to every event: ${busy.rps.toFixed(0)} tokens/s, ${(deliveredUnderLoad / DURATION_S).toFixed(0)} deliveries/s during the load, lag p99 ${percentile(underLoad, 0.99).toFixed(0)} ms`)
    // Drain the backlog (every token.issued of the load, SUBSCRIPTIONS times), for two minutes at most.
    const expected = Math.round(busy.rps * DURATION_S) * SUBSCRIPTIONS
    const deadline = Date.now() + 120_000
    while (receiver.count() - before < expected * 0.99 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200))
    const drainedS = (Date.now() - started) / 1000
    const deliveriesPerSecond = (receiver.count() - before) / drainedS
    console.log(`delivered ${receiver.count() - before} in ${drainedS.toFixed(1)} s: ${deliveriesPerSecond.toFixed(0)} deliveries/s`)

    const ratio = (value: number): string => `${((value / none.rps) * 100).toFixed(0)}%`
    writeSection([
      '| phase | tokens/s | of no subscription | failed requests |',
      '| --- | --- | --- | --- |',
      `| no subscription | ${none.rps.toFixed(0)} | 100% | ${none.non2xx} |`,
      `| ${SUBSCRIPTIONS} subscriptions, no matching event | ${idle.rps.toFixed(0)} | ${ratio(idle.rps)} | ${idle.non2xx} |`,
      `| ${SUBSCRIPTIONS} subscriptions to every event | ${busy.rps.toFixed(0)} | ${ratio(busy.rps)} | ${busy.non2xx} |`,
      '',
      NOTE,
      '',
      `Deliveries: ${deliveriesPerSecond.toFixed(0)} a second to the local receiver (${receiver.count() - before} in ${drainedS.toFixed(1)} s, from the start of the last phase until its backlog was delivered, or two minutes); lag from event to first attempt under load: p50 ${percentile(underLoad, 0.5).toFixed(0)} ms, p99 ${percentile(underLoad, 0.99).toFixed(0)} ms.`
    ].join('\n'))
  } finally {
    await app?.close()
    await receiver.close()
    await database.drop()
  }
}

/** Replaces the webhooks section of docs/performance.md (up to the next section), or adds it before the audit one. */
function writeSection (table: string): void {
  const path = join(projectRoot, 'docs', 'performance.md')
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '# Performance\n'
  const section = `${WEBHOOKS_HEADING}\n\nMeasured by \`npm run bench:webhooks\` (bench/webhooks.ts): the server, a local receiver and autocannon in one process on 127.0.0.1 (so the phases compare with each other, not with the table above), ${DURATION_S}-second phases of client_credentials requests over 10 connections, PostgreSQL and Redis on the same machine. Target: ${SUBSCRIPTIONS} subscriptions cost the token endpoint at most 10%. ${new Date().toISOString()}.\n\n${table}\n`
  const start = current.indexOf(WEBHOOKS_HEADING)
  if (start >= 0) {
    const next = current.indexOf('\n## ', start + WEBHOOKS_HEADING.length)
    writeFileSync(path, current.slice(0, start) + section + (next < 0 ? '' : `\n${current.slice(next + 1)}`))
  } else {
    const audit = current.indexOf(AUDIT_HEADING)
    writeFileSync(path, audit < 0 ? `${current.trimEnd()}\n\n${section}` : `${current.slice(0, audit)}${section}\n${current.slice(audit)}`)
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
