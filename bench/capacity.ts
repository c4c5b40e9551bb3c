/**
 * `npm run bench:capacity`: what a token costs each part of the stack, and what 1k, 10k and 100k tokens/s would take.
 * N replicas of our built server (BENCH_REPLICAS, default 1,2,4) on one PostgreSQL database and one Redis, behind
 * HAProxy (round robin, connections to the replicas reused), driven by autocannon with BENCH_CONNECTIONS (default 32)
 * connections, or BENCH_CONNECTIONS_PER_REPLICA times the replicas, of client_credentials requests spread over a few
 * agents, each verified once on every replica first (warm tokens). Over each round of BENCH_DURATION_S (default 10), BENCH_ROUNDS per N (default 2): tokens/s, p99,
 * and the CPU of the replicas (their main threads, libuv's thread pool and the rest), of the PostgreSQL backends of
 * the database, of Redis, of HAProxy and of the load generator; PostgreSQL transactions and rows a token
 * (pg_stat_database), Redis commands a token (INFO), audit events a group-commit batch (the replicas' /metrics).
 * From those costs, a projection; both go to the "## Capacity" section of docs/performance.md, the rest kept.
 *
 * Redis is a redis-server of the bench's own (BENCH_CAPACITY_REDIS_PORT, default 6391, no persistence), so its CPU
 * and command counts are this bench's alone; PostgreSQL is BENCH_DATABASE_URL's server, a database created and
 * dropped as bench/run.ts does. Needs haproxy and redis-server on PATH. BENCH_ALG as in bench/run.ts.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import type postgres from 'postgres'
import { createClient } from 'redis'
import { generateSigningKeyPair, signingKeyTypeOf } from '../src/embedded.js'
import { createBenchDatabase } from './database.js'
import { backendsCpuMs, COMMIT, cpuMsOf, createAgents, spreadTokenRequests, startProcess, startServer, verifyEach, waitForHttp, writeSection, type OrganizationAgent } from './harness.js'

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const REPLICAS = (process.env.BENCH_REPLICAS ?? '1,2,4').split(',').map((n) => Number(n.trim())).filter((n) => n > 0)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32)
// When set, the connections grow with the replicas (this many for each): every replica sees the concurrency one
// replica sees with BENCH_CONNECTIONS of them, so what splitting the load costs (less batched in each replica, in
// PostgreSQL and Redis) is told apart from what adding replicas costs.
const CONNECTIONS_PER_REPLICA = process.env.BENCH_CONNECTIONS_PER_REPLICA === undefined ? undefined : Number(process.env.BENCH_CONNECTIONS_PER_REPLICA)
const connectionsFor = (replicas: number): number => CONNECTIONS_PER_REPLICA === undefined ? CONNECTIONS : CONNECTIONS_PER_REPLICA * replicas
const ALG = process.env.BENCH_ALG ?? 'RS256'
const KEY_TYPE = signingKeyTypeOf(ALG)
const REDIS_PORT = Number(process.env.BENCH_CAPACITY_REDIS_PORT ?? 6391)
const LB_PORT = 3320
const FIRST_REPLICA_PORT = 3321
const AGENTS = 8
// A replica is given one core, planned at 70% busy; so is one Redis (single-threaded: one core is all it uses).
const CORE_BUDGET = 0.7
const TARGETS = [1_000, 10_000, 100_000]
// The primary the projection weighs PostgreSQL against: an ordinary database server's cores.
const PRIMARY_CORES = Number(process.env.BENCH_PRIMARY_CORES ?? 8)
const POOL_THREADS = Number(process.env.UV_THREADPOOL_SIZE ?? 4)
export const CAPACITY_HEADING = '## Capacity'

const redisClient = (url: string) => createClient({ url })
type Redis = ReturnType<typeof redisClient>

/** Counters read before and after a round; a round's cost is their difference. */
interface Sample {
  at: number
  main: number, pool: number, other: number // replicas' CPU ms: main threads, libuv-worker threads, the rest (V8's, etc.)
  postgres: number, redis: number, haproxy: number, generator: number, machineBusy: number // CPU ms
  xacts: number, rowsInserted: number, redisCommands: number, redisByCommand: Map<string, number>
  auditBatches: number, auditEvents: number, verifications: number
}

interface RoundResult { tokens: number, failed: number, p99: number, cost: Omit<Sample, 'at' | 'redisByCommand'> & { seconds: number, redisByCommand: Map<string, number> } }

/** A thread's name and start time (clock ticks after boot), from /proc/{pid}/task/{tid}. */
function threadOf (pid: number, tid: string): { name: string, start: number } {
  try {
    const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ').at(-1)?.split(' ') ?? []
    return { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(), start: Number(fields[19]) }
  } catch {
    return { name: '', start: 0 }
  }
}

/**
 * The replicas' CPU, split by thread: the main thread (tid = pid), libuv's pool (signing, argon2id), the rest (V8's
 * compiler and garbage collector helpers, node's own). Node 20 names all its threads "node" (newer ones name the
 * pool's "libuv-worker"); unnamed, the pool's are the last UV_THREADPOOL_SIZE (default 4) threads started: node starts
 * its platform threads before any code runs, libuv its pool on the first task (which may come early, while modules
 * load, so their start times do not tell them apart).
 */
function replicasCpuMs (pids: number[]): { main: number, pool: number, other: number } {
  const total = { main: 0, pool: 0, other: 0 }
  for (const pid of pids) {
    let tids: string[] = []
    try { tids = readdirSync(`/proc/${pid}/task`) } catch {}
    const helpers = tids.map((tid) => ({ tid: Number(tid), ...threadOf(pid, tid) })).filter(({ tid }) => tid !== pid)
      .sort((a, b) => a.start - b.start || a.tid - b.tid)
    const named = helpers.some(({ name }) => name.startsWith('libuv-worker'))
    total.main += cpuMsOf(pid, pid)
    helpers.forEach((thread, index) => {
      const pool = named ? thread.name.startsWith('libuv-worker') : index >= helpers.length - POOL_THREADS
      total[pool ? 'pool' : 'other'] += cpuMsOf(pid, thread.tid)
    })
  }
  return total
}

/** Busy CPU ms of the whole machine (every process, the other work on it included), from /proc/stat. */
function machineBusyMs (): number {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string).trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
  const busy = fields.slice(0, 8).reduce((sum, value, index) => index === 3 || index === 4 ? sum : sum + value, 0)
  return busy * 10
}

const infoField = (info: string, name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)

/** Audit group-commit batches and events, and secret verifications (argon2id) so far, summed over the replicas' /metrics. */
async function auditCounters (bases: string[], metricsToken: string): Promise<{ batches: number, events: number, verifications: number }> {
  let batches = 0
  let events = 0
  let verifications = 0
  for (const base of bases) {
    const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } })).text()
    for (const line of text.split('\n')) {
      if (line.startsWith('agentidp_audit_batch_size_count')) batches += Number(line.split(' ').at(-1))
      if (line.startsWith('agentidp_audit_batch_size_sum')) events += Number(line.split(' ').at(-1))
      if (line.startsWith('agentidp_client_secret_verifications_total')) verifications += Number(line.split(' ').at(-1))
    }
  }
  return { batches, events, verifications }
}

async function sample (sql: postgres.Sql, redis: Redis, pids: { replicas: number[], haproxy: number }, bases: string[], metricsToken: string): Promise<Sample> {
  const cpu = replicasCpuMs(pids.replicas)
  const generator = process.cpuUsage()
  const [database] = await sql<Array<{ xacts: string, rows: string }>>`select xact_commit + xact_rollback as xacts, tup_inserted as rows from pg_stat_database where datname = current_database()`
  const [cpuInfo, stats, commandStats] = [await redis.info('cpu'), await redis.info('stats'), await redis.info('commandstats')]
  const redisByCommand = new Map<string, number>()
  for (const match of commandStats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) redisByCommand.set(match[1] as string, Number(match[2]))
  const audit = await auditCounters(bases, metricsToken)
  return {
    at: Date.now(),
    ...cpu,
    postgres: await backendsCpuMs(sql),
    redis: (infoField(cpuInfo, 'used_cpu_user') + infoField(cpuInfo, 'used_cpu_sys')) * 1000,
    haproxy: cpuMsOf(pids.haproxy),
    generator: (generator.user + generator.system) / 1000,
    machineBusy: machineBusyMs(),
    xacts: Number(database?.xacts ?? 0),
    rowsInserted: Number(database?.rows ?? 0),
    redisCommands: infoField(stats, 'total_commands_processed'),
    redisByCommand,
    auditBatches: audit.batches,
    auditEvents: audit.events,
    verifications: audit.verifications
  }
}

function haproxyConfig (replicaPorts: number[]): string {
  return `global
  nbthread 1
  maxconn 4096

defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always

frontend tokens
  bind 127.0.0.1:${LB_PORT}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /health/live
${replicaPorts.map((port, index) => `  server replica${index + 1} 127.0.0.1:${port} check inter 2s`).join('\n')}
`
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await Promise.race([exited, sleep(5000)])
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

interface Measured {
  replicas: number
  tokensPerS: number, p99: number, failed: number, load: number
  perToken: { main: number, pool: number, other: number, replica: number, postgres: number, redis: number, haproxy: number, generator: number, xacts: number, rows: number, redisCommands: number }
  cores: { replicas: number, postgres: number, redis: number, haproxy: number, generator: number, machine: number }
  eventsPerBatch: number
  verifications: number
  /** CPU ms a second one idle replica spends (between rounds). */
  idleMsPerS: number
  redisCommands: string
}

async function measure (replicaCount: number, context: { databaseUrl: string, sql: postgres.Sql, redisUrl: string, redis: Redis, keys: { privateKey: string, publicKey: string }, agents: OrganizationAgent[], workDir: string }): Promise<Measured> {
  const metricsToken = randomBytes(24).toString('base64url')
  const ports = Array.from({ length: replicaCount }, (_, index) => FIRST_REPLICA_PORT + index)
  const children: ChildProcess[] = []
  try {
    const servers = ports.map((port) => startServer({
      port, databaseUrl: context.databaseUrl, redisUrl: context.redisUrl, keys: context.keys,
      // Every replica is the same issuer: the one address clients know, the load balancer's.
      issuer: `http://127.0.0.1:${LB_PORT}`, env: { METRICS_TOKEN: metricsToken }
    }))
    children.push(...servers.map(({ child }) => child))
    const bases = ports.map((port) => `http://127.0.0.1:${port}`)
    for (const [index, server] of servers.entries()) await waitForHttp(`${bases[index] as string}/health/ready`, server.child, server.output)
    const configPath = join(context.workDir, `haproxy-${replicaCount}.cfg`)
    writeFileSync(configPath, haproxyConfig(ports))
    const haproxy = startProcess(['-f', configPath, '-db'], {}, 'haproxy')
    children.push(haproxy.child)
    const lb = `http://127.0.0.1:${LB_PORT}`
    await waitForHttp(`${lb}/health/live`, haproxy.child, haproxy.output)
    // Warm: each replica verifies each agent's secret once (argon2id; verified secrets are cached a minute, per
    // replica), then a warm-up through the load balancer compiles the hot paths of every replica.
    for (const base of bases) await verifyEach(base, context.agents)
    await autocannon({ ...spreadTokenRequests(lb, context.agents), connections: 8, amount: 2000 * replicaCount })

    const pids = { replicas: servers.map(({ child }) => child.pid as number), haproxy: haproxy.child.pid as number }
    const rounds: RoundResult[] = []
    const loads: number[] = []
    const idleMsPerS: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      // pg_stat_database is written by each backend at most once a second: let the counts of what came before land.
      // Meanwhile, what the replicas spend idle (their timers): a cost that comes with every replica, busy or not.
      const idleFrom = { at: Date.now(), ...replicasCpuMs(pids.replicas) }
      await sleep(1200)
      const idleTo = replicasCpuMs(pids.replicas)
      idleMsPerS.push((idleTo.main + idleTo.pool + idleTo.other - idleFrom.main - idleFrom.pool - idleFrom.other) / replicaCount / ((Date.now() - idleFrom.at) / 1000))
      const before = await sample(context.sql, context.redis, pids, bases, metricsToken)
      const result = await autocannon({ ...spreadTokenRequests(lb, context.agents), connections: connectionsFor(replicaCount), duration: DURATION_S })
      const cpuAfter = await sample(context.sql, context.redis, pids, bases, metricsToken)
      await sleep(1200)
      const countsAfter = await sample(context.sql, context.redis, pids, bases, metricsToken)
      loads.push(loadavg()[0] as number)
      const delta = (key: keyof Omit<Sample, 'redisByCommand'>, after: Sample = cpuAfter): number => after[key] - before[key]
      const redisByCommand = new Map([...countsAfter.redisByCommand].map(([name, calls]) => [name, calls - (before.redisByCommand.get(name) ?? 0)]))
      const tokens = result['2xx']
      rounds.push({
        tokens,
        failed: result.non2xx + result.errors + result.timeouts,
        p99: result.latency.p99,
        cost: {
          seconds: delta('at') / 1000,
          main: delta('main'), pool: delta('pool'), other: delta('other'), postgres: delta('postgres'), redis: delta('redis'), haproxy: delta('haproxy'), generator: delta('generator'), machineBusy: delta('machineBusy'),
          xacts: delta('xacts', countsAfter), rowsInserted: delta('rowsInserted', countsAfter), redisCommands: delta('redisCommands', countsAfter),
          auditBatches: delta('auditBatches', countsAfter), auditEvents: delta('auditEvents', countsAfter), verifications: delta('verifications', countsAfter), redisByCommand
        }
      })
      console.log(`${replicaCount} replica(s), round ${round + 1}: ${Math.round(tokens / DURATION_S)} tokens/s, p99 ${result.latency.p99} ms, ${rounds.at(-1)?.failed} failed, load ${loads.at(-1)?.toFixed(1)}`)
    }
    const tokens = rounds.reduce((sum, r) => sum + r.tokens, 0)
    const seconds = rounds.reduce((sum, r) => sum + r.cost.seconds, 0)
    const total = (key: 'main' | 'pool' | 'other' | 'postgres' | 'redis' | 'haproxy' | 'generator' | 'machineBusy' | 'xacts' | 'rowsInserted' | 'redisCommands' | 'auditBatches' | 'auditEvents' | 'verifications'): number => rounds.reduce((sum, r) => sum + r.cost[key], 0)
    const usPerToken = (key: Parameters<typeof total>[0]): number => total(key) * 1000 / tokens
    const cores = (key: Parameters<typeof total>[0]): number => total(key) / 1000 / seconds
    const byCommand = new Map<string, number>()
    for (const r of rounds) for (const [name, calls] of r.cost.redisByCommand) byCommand.set(name, (byCommand.get(name) ?? 0) + calls)
    const redisCommands = [...byCommand].filter(([, calls]) => calls / tokens >= 0.01).sort(([, a], [, b]) => b - a)
      .map(([name, calls]) => `${name} ${(calls / tokens).toFixed(2)}`).join(', ')
    const measured: Measured = {
      replicas: replicaCount,
      tokensPerS: tokens / (ROUNDS * DURATION_S),
      p99: Math.max(...rounds.map((r) => r.p99)),
      failed: rounds.reduce((sum, r) => sum + r.failed, 0),
      load: Math.max(...loads),
      perToken: {
        main: usPerToken('main'), pool: usPerToken('pool'), other: usPerToken('other'),
        replica: usPerToken('main') + usPerToken('pool') + usPerToken('other'),
        postgres: usPerToken('postgres'), redis: usPerToken('redis'), haproxy: usPerToken('haproxy'), generator: usPerToken('generator'),
        xacts: total('xacts') / tokens, rows: total('rowsInserted') / tokens, redisCommands: total('redisCommands') / tokens
      },
      cores: { replicas: cores('main') + cores('pool') + cores('other'), postgres: cores('postgres'), redis: cores('redis'), haproxy: cores('haproxy'), generator: cores('generator'), machine: cores('machineBusy') },
      eventsPerBatch: total('auditEvents') / Math.max(1, total('auditBatches')),
      verifications: total('verifications'),
      idleMsPerS: idleMsPerS.reduce((sum, value) => sum + value, 0) / idleMsPerS.length,
      redisCommands
    }
    console.log(`  a token: replicas ${measured.perToken.replica.toFixed(0)} µs (main ${measured.perToken.main.toFixed(0)}, pool ${measured.perToken.pool.toFixed(0)}, other ${measured.perToken.other.toFixed(0)}), PostgreSQL ${measured.perToken.postgres.toFixed(0)} µs and ${measured.perToken.xacts.toFixed(3)} transactions, Redis ${measured.perToken.redis.toFixed(0)} µs and ${measured.perToken.redisCommands.toFixed(2)} commands (${redisCommands}), HAProxy ${measured.perToken.haproxy.toFixed(0)} µs, load generator ${measured.perToken.generator.toFixed(0)} µs; ${measured.eventsPerBatch.toFixed(1)} audit events a batch; ${measured.verifications} secret verifications; idle, a replica spends ${measured.idleMsPerS.toFixed(1)} ms of CPU a second; machine ${measured.cores.machine.toFixed(2)} cores busy`)
    return measured
  } finally {
    for (const child of children.reverse()) await stop(child)
  }
}

interface Projection { rate: number, replicas: number, mainCeiling: number, postgresCores: number, transactions: number, redisCores: number, redisShards: number, redisCommands: number }

function project (costs: Measured['perToken']): Projection[] {
  return TARGETS.map((rate) => ({
    rate,
    replicas: Math.ceil(rate * costs.replica / (CORE_BUDGET * 1e6)),
    mainCeiling: 1e6 / costs.main,
    postgresCores: rate * costs.postgres / 1e6,
    transactions: rate * costs.xacts,
    redisCores: rate * costs.redis / 1e6,
    redisShards: Math.ceil(rate * costs.redis / (CORE_BUDGET * 1e6)),
    redisCommands: rate * costs.redisCommands
  }))
}

/** How a cost moved from the first row to the last: '1.5× (600 → 900 µs)'. */
function ratioOf (results: Measured[], cost: (r: Measured) => number): string {
  const first = cost(results[0] as Measured)
  const last = cost(results.at(-1) as Measured)
  return `${(last / first).toFixed(1)}× (${round(first)} → ${round(last)} µs)`
}

const round = (value: number, digits = 0): string => value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function report (results: Measured[], loadBefore: number): string {
  const base = results[0] as Measured
  const costs = base.perToken
  const projections = project(costs)
  const slope = results.map((r) => `${r.replicas}: ${(r.tokensPerS / base.tokensPerS).toFixed(2)}×`).join(', ')
  const redisCeiling = CORE_BUDGET * 1e6 / costs.redis
  const postgresPerCore = CORE_BUDGET * 1e6 / costs.postgres
  return `${CAPACITY_HEADING}

Measured by \`npm run bench:capacity\` (bench/capacity.ts): ${REPLICAS.join(', ')} replica(s) of our built server (production mode,
${ALG}, started as in src/runtime.ts) on one PostgreSQL database and one Redis, behind HAProxy (round robin, one
thread, connections to the replicas reused), ${CONNECTIONS_PER_REPLICA === undefined ? CONNECTIONS : `${CONNECTIONS_PER_REPLICA} a replica (BENCH_CONNECTIONS_PER_REPLICA)`} autocannon connections of client_credentials requests
spread over ${AGENTS} agents, each verified on every replica before the rounds (warm tokens). ${ROUNDS} round(s) of
${DURATION_S} s per replica count. CPU is user + system from /proc: the replicas' main threads, libuv's thread
pool (RSA signing, argon2id) and their other threads (V8's compiler and GC helpers); PostgreSQL's backends connected
to the bench's database (not the WAL writer, checkpointer and other shared processes); a redis-server of the bench's
own (INFO, no persistence); HAProxy; the load generator. Transactions and rows from pg_stat_database, Redis
commands from INFO commandstats, which counts the commands the server's scripts run inside EVAL too (pg_stat_statements is not loaded on this server, so statements are not counted one by one).

- machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), shared with other work; load average before the run ${loadBefore.toFixed(2)}
- date: ${new Date().toISOString()}
- commit: ${COMMIT}

| replicas | tokens/s | × 1 replica | p99 | failed | replicas' CPU a token (main + pool + other); idle, a replica | PostgreSQL a token | Redis a token | HAProxy, load generator a token | audit events a batch (secret verifications) | cores busy: replicas, PostgreSQL, Redis, machine | load (1 min) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${results.map((r) => `| ${r.replicas} (${connectionsFor(r.replicas)} connections) | ${round(r.tokensPerS)} | ${(r.tokensPerS / base.tokensPerS).toFixed(2)}× | ${r.p99} ms | ${r.failed} | ${round(r.perToken.replica)} µs (${round(r.perToken.main)} + ${round(r.perToken.pool)} + ${round(r.perToken.other)}); ${r.idleMsPerS.toFixed(1)} ms/s | ${round(r.perToken.postgres)} µs, ${r.perToken.xacts.toFixed(3)} transactions, ${r.perToken.rows.toFixed(2)} rows inserted | ${round(r.perToken.redis)} µs, ${r.perToken.redisCommands.toFixed(2)} commands (${r.redisCommands}) | ${round(r.perToken.haproxy)} µs, ${round(r.perToken.generator)} µs | ${r.eventsPerBatch.toFixed(1)} (${r.verifications}) | ${r.cores.replicas.toFixed(2)}, ${r.cores.postgres.toFixed(2)}, ${r.cores.redis.toFixed(2)}, ${r.cores.machine.toFixed(2)} | ${r.load.toFixed(1)} |`).join('\n')}

Slope (tokens/s against one replica): ${slope}. ${cpus().length} cores carry the replicas, PostgreSQL, Redis, HAProxy and
the load generator together, and the other work on the machine (the machine column counts every process): the
1-replica row already keeps ${base.cores.machine.toFixed(1)} of the ${cpus().length} cores busy, so more replicas can add little throughput here: they
split the same cores. ${cpus().length} replicas measure sharing and 4 contention, not scale; read the slope from 1 to 2 for what
splitting costs. It costs: from the first row to the last, a token's CPU grows in the replicas
${ratioOf(results, (r) => r.perToken.replica)}, in PostgreSQL ${ratioOf(results, (r) => r.perToken.postgres)} and in Redis ${ratioOf(results, (r) => r.perToken.redis)}, for the same work
(${costs.redisCommands.toFixed(1)} Redis commands and about one audit row a token in every row). ${batchingNote(results)}
More processes than cores switch more. The projection below therefore uses the 1-replica row, whose replica
runs near a full core, as a planned replica at ${CORE_BUDGET * 100}% would.${CONNECTIONS_PER_REPLICA === undefined ? ' BENCH_CONNECTIONS_PER_REPLICA=32 gives every\nreplica the 1-replica row\'s concurrency, to tell that dilution apart from a cost of scale.' : ''} Idle CPU is read over 1.2 s
between rounds, in 10 ms clock ticks: a coarse figure.

### Projection

From the ${base.replicas}-replica row's costs a token: replicas ${round(costs.replica)} µs of CPU (main thread ${round(costs.main)} µs,
so one replica's event loop tops out near ${round(1e6 / costs.main)} tokens/s), PostgreSQL ${round(costs.postgres)} µs and
${costs.xacts.toFixed(3)} transactions, Redis ${round(costs.redis)} µs and ${costs.redisCommands.toFixed(2)} commands. A replica and a Redis are
each planned at ${CORE_BUDGET * 100}% of one core.

| tokens/s | replicas (one core each, ${CORE_BUDGET * 100}% busy) | PostgreSQL cores (backends) | PostgreSQL transactions/s (at most) | audit rows/s | Redis commands/s | Redis cores | Redis instances (${CORE_BUDGET * 100}% of a core each) |
| --- | --- | --- | --- | --- | --- | --- | --- |
${projections.map((p) => `| ${round(p.rate)} | ${p.replicas} | ${p.postgresCores.toFixed(1)} | ${round(p.transactions)} | ${round(p.rate)} | ${round(p.redisCommands)} | ${p.redisCores.toFixed(2)} | ${p.redisShards}${p.redisShards > 1 ? ' (Redis Cluster)' : ''} |`).join('\n')}

- Replicas scale out: they share nothing but PostgreSQL and Redis. Each keeps its own cache of verified secrets
  (a minute), so each active client costs every replica one argon2id a minute: clients × replicas of them.
- Redis is single-threaded: one instance carries about ${round(redisCeiling)} tokens/s at ${CORE_BUDGET * 100}% of its core. Past that its
  keys (${costs.redisCommands.toFixed(1)} commands a token: ${base.redisCommands}) go to a Redis Cluster, sharded by client and token.
- PostgreSQL: one primary takes every audit event. At ${round(postgresPerCore)} tokens/s a core of backend CPU (plus the WAL writer,
  not counted here), 100k tokens/s asks ${projections.at(-1)?.postgresCores.toFixed(0)} cores of one primary. The transactions column is
  an upper bound: the audit group commit puts every event queued during a commit into the next transaction (up to
  500), so the batch grows with each replica's load (${results.map((r) => r.eventsPerBatch.toFixed(1)).join(', ')} events a batch in the rows above)
  and transactions a token fall as the load rises. Its limit is one organization's chain: every batch of every
  replica that touches it takes its lock in turn, so one organization's tokens/s is bounded by 500 events over the
  time a batch holds that lock, whatever the replicas.
- First bottleneck: ${firstBottleneck(costs, redisCeiling, postgresPerCore)}
`
}

/** Which shared part gives out first as replicas are added, by the measured costs and a primary of PRIMARY_CORES. */
function firstBottleneck (costs: Measured['perToken'], redisCeiling: number, postgresPerCore: number): string {
  const postgresCeiling = postgresPerCore * PRIMARY_CORES
  const poolShare = costs.pool / costs.replica
  const redisFirst = redisCeiling < postgresCeiling
  return `the replicas scale out, so the first wall is a shared part. One Redis fills its core at about
  ${round(redisCeiling)} tokens/s; a primary of ${PRIMARY_CORES} cores (BENCH_PRIMARY_CORES) fills its backends at about
  ${round(postgresCeiling)} tokens/s at this row's batch size (more as batches grow). ${redisFirst
    ? `So Redis comes first: ${costs.redisCommands.toFixed(1)} commands a token on one thread. What moves it: Redis Cluster (the keys sharded by
  client and token), fewer round trips a token (the rate-limit and standing checks in one script or pipeline).`
    : `So PostgreSQL comes first, through the audit group commit (${costs.xacts.toFixed(3)} transactions and one hash-chained row a token).
  What moves it: larger batches (they grow with each replica's load; more batches in flight), more organizations
  (each chain locks on its own), and audit storage that scales out (partitioned by organization).`}
  Apart from both, one organization's chain caps that organization: its batches, from every replica, lock it in turn.
  On the replicas, libuv's pool (the ${ALG} signature) is ${(poolShare * 100).toFixed(0)}% of a token's CPU${ALG === 'RS256' ? ': ES256 or EdDSA\n  (BENCH_ALG) cut it, and the replicas needed with it' : ''}.`
}

async function main (): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'agentidp-capacity-'))
  const redisServer = startProcess(['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workDir], {}, 'redis-server')
  const database = await createBenchDatabase('agentidp_bench_capacity', 2)
  const redisUrl = `redis://127.0.0.1:${REDIS_PORT}/0`
  const redis = redisClient(redisUrl)
  const loadBefore = loadavg()[0] as number
  try {
    for (let attempt = 0; ; attempt++) {
      try { await redis.connect(); break } catch (error) {
        if (attempt === 50 || redisServer.child.exitCode !== null) throw new Error(`redis-server did not start: ${redisServer.output()}`, { cause: error })
        await sleep(100)
      }
    }
    await redis.flushDb()
    const agents = (await createAgents(database.sql, AGENTS)).map(({ clientId, secret }) => ({ path: '/oauth2/token', clientId, secret }))
    const keys = generateSigningKeyPair(KEY_TYPE)
    const results: Measured[] = []
    for (const replicas of REPLICAS) {
      results.push(await measure(replicas, { databaseUrl: database.url, sql: database.sql, redisUrl, redis, keys, agents, workDir }))
    }
    const section = report(results, loadBefore)
    writeSection(CAPACITY_HEADING, section)
    console.log(`\n${section}\nwritten to docs/performance.md`)
  } finally {
    await redis.close().catch(() => {})
    await stop(redisServer.child)
    await database.drop()
    rmSync(workDir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})

/**
 * What the audit batch sizes say about splitting the load: with the connections fixed, each replica gets a fraction
 * of them and batches less; with connections a replica, each batches as much or more (the shared chain locks queue).
 */
function batchingNote (results: Array<{ eventsPerBatch: number }>): string {
  const sizes = results.map((r) => r.eventsPerBatch.toFixed(1)).join(' → ')
  const first = results[0]?.eventsPerBatch ?? 0
  const last = results.at(-1)?.eventsPerBatch ?? 0
  if (last < first) {
    return `Each replica gets a fraction of the load, so less is batched: fewer audit events a group commit (${sizes}, so more
transactions a token), fewer Redis commands a write on each connection, fewer requests a turn of each event loop.`
  }
  return `Each replica carries as many connections as the single one did, so batching holds: audit events a group commit
${sizes} (so as few or fewer transactions a token); what grows is the replicas' own CPU a token, as they share the cores.`
}
