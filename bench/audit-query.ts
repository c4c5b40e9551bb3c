/**
 * `npm run bench:audit`: filtered pages of GET /api/v1/audit-events on a million events. Prints p50/p95 per
 * filter; the target is p95 under 50 ms. BENCH_DATABASE_URL as in bench/run.ts; BENCH_AUDIT_EVENTS (default 1e6).
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { createBenchDatabase } from './database.js'
import { projectRoot } from '../src/paths.js'
import { mintAccessToken } from '../test/support/tokens.js'

const EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 1_000_000)
const REQUESTS = 200

async function main (): Promise<void> {
  const database = await createBenchDatabase('agentidp_bench_audit', 1)
  const { sql, url } = database
  try {
    console.log(`seeding ${EVENTS} events…`)
    // 85% token.issued, the rest spread over other types; 2,000 agents and actors; one event a second.
    await sql`
      insert into audit_events (seq, id, occurred_at, type, agent_id, actor, ip, request_id, data, prev_hash, hash)
      select n, gen_random_uuid(), now() - make_interval(secs => ${EVENTS} - n),
        case when n % 100 < 85 then 'token.issued' when n % 100 < 95 then 'auth.failed' when n % 100 < 98 then 'agent.updated' else 'credential.revoked' end,
        ('00000000-0000-7000-8000-' || lpad(to_hex(n % 2000), 12, '0'))::uuid,
        'client_' || (n % 2000), '127.0.0.1', null, '{}'::jsonb, repeat('0', 64), repeat('0', 64)
      from generate_series(1, ${EVENTS}) n`
    await sql`analyze audit_events`
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: url, DATA_DIR: mkdtempSync(join(tmpdir(), 'agentidp-bench-')), RATE_LIMIT_API_PER_MIN: '0' })
    const app = await buildApp(config)
    const authorization = `Bearer ${await mintAccessToken(app, { scopes: ['audit:read'] })}`
    const dayAgo = new Date(Date.now() - 86_400_000).toISOString()
    const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString()
    const filters: Record<string, string> = {
      'newest page': 'limit=50',
      'type (common)': 'type=token.issued&limit=50',
      'type (rare)': 'type=credential.revoked&limit=50',
      'two rare types': 'type=credential.revoked,agent.updated&limit=50',
      agent: 'agent_id=00000000-0000-7000-8000-0000000003e8&limit=50',
      actor: 'actor=client_42&limit=50',
      'type + agent': 'type=auth.failed&agent_id=00000000-0000-7000-8000-000000000011&limit=50',
      'one old day': `since=${weekAgo}&until=${new Date(Date.parse(weekAgo) + 86_400_000).toISOString()}&limit=500`,
      'last day, rare type': `type=credential.revoked&since=${dayAgo}&limit=50`
    }
    const lines = ['| filter | p50 ms | p95 ms |', '| --- | --- | --- |']
    for (const [label, query] of Object.entries(filters)) {
      const times: number[] = []
      let cursor: string | undefined
      for (let i = 0; i < REQUESTS; i++) {
        const started = process.hrtime.bigint()
        const response = await app.inject({ method: 'GET', url: `/api/v1/audit-events?${query}${cursor === undefined ? '' : `&cursor=${cursor}`}`, headers: { authorization } })
        times.push(Number(process.hrtime.bigint() - started) / 1e6)
        if (response.statusCode !== 200) throw new Error(`${label}: ${response.statusCode} ${response.body}`)
        // Walk forward through pages, restarting at the end: later pages are measured too.
        cursor = response.json().next_cursor ?? undefined
      }
      times.sort((a, b) => a - b)
      lines.push(`| ${label} | ${(times[Math.floor(REQUESTS * 0.5)] as number).toFixed(1)} | ${(times[Math.floor(REQUESTS * 0.95)] as number).toFixed(1)} |`)
      console.log(lines.at(-1))
    }
    writeSection(lines.join('\n'))
    await app.close()
  } finally {
    await database.drop()
  }
}

/** Replaces the audit section of docs/performance.md (everything from its heading on), keeping the rest. */
function writeSection (table: string): void {
  const path = join(projectRoot, 'docs', 'performance.md')
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '# Performance\n'
  const head = current.split(AUDIT_HEADING)[0]?.trimEnd() ?? ''
  writeFileSync(path, `${head}\n\n${AUDIT_HEADING}\n\nMeasured by \`npm run bench:audit\` (bench/audit-query.ts): ${REQUESTS} requests per filter, in process, on ${EVENTS.toLocaleString('en')} events in PostgreSQL (85% token.issued, 2,000 agents and actors), following next_cursor. Target: p95 under 50 ms. ${new Date().toISOString()}.\n\n${table}\n`)
}

export const AUDIT_HEADING = '## Audit queries'

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
