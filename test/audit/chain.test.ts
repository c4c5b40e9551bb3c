import { DEFAULT_ORG_ID } from '../../src/database.js'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { verifyChain, type AuditEvent } from '../../plugins/audit/index.js'
import type { App } from '../../src/app.js'
import { generateSigningKeyPair } from '../../src/embedded.js'
import { newId } from '../../src/ids.js'
import { ownerSql, setupTestContext } from '../helper.js'

const context = setupTestContext()
const run = promisify(execFile)

function event (n: number): AuditEvent {
  return { type: 'credential.created', orgId: DEFAULT_ORG_ID, actor: 'admin', ip: '198.51.100.7', requestId: `req-${n}`, agentId: newId(), data: { credential_id: newId(), n } }
}

async function eventAt (app: App, offsetFromEnd: number): Promise<{ seq: string, id: string }> {
  const [row] = await ownerSql(app)<Array<{ seq: string, id: string }>>`select seq, id from audit_events order by seq desc offset ${offsetFromEnd} limit 1`
  return row as { seq: string, id: string }
}

/** Runs SQL with the append-only triggers off, as a superuser could, and turns them back on. */
async function behindTheAppsBack (app: App, change: (sql: App['sql']) => Promise<unknown>): Promise<void> {
  await ownerSql(app).begin(async (tx) => {
    await tx`alter table audit_events disable trigger user`
    await change(tx as never)
    await tx`alter table audit_events enable trigger user`
  })
}

describe('append-only, enforced by PostgreSQL', () => {
  it('refuses UPDATE', async () => {
    const app = await context.build()
    await app.audit.record(event(1))
    await expect(ownerSql(app)`update audit_events set actor = 'someone else'`).rejects.toThrow(/append-only: UPDATE is not allowed/)
  })

  it('refuses DELETE', async () => {
    const app = await context.build()
    await app.audit.record(event(2))
    await expect(ownerSql(app)`delete from audit_events`).rejects.toThrow(/append-only: DELETE is not allowed/)
  })

  it('refuses TRUNCATE', async () => {
    const app = await context.build()
    await app.audit.record(event(3))
    await expect(ownerSql(app)`truncate audit_events`).rejects.toThrow(/append-only: TRUNCATE is not allowed/)
    const [{ count }] = await ownerSql(app)<[{ count: number }]>`select count(*)::int as count from audit_events`
    expect(count).toBeGreaterThan(0)
  })
})

describe('tamper evidence', () => {
  it('verifies the chain, then names the event altered behind the application\'s back', async () => {
    const app = await context.build()
    await Promise.all(Array.from({ length: 20 }, (_, n) => app.audit.record(event(n))))
    const before = await verifyChain(ownerSql(app), DEFAULT_ORG_ID)
    expect(before.ok).toBe(true)

    const victim = await eventAt(app, 5)
    const [original] = await ownerSql(app)<Array<{ data: Record<string, unknown> }>>`select data from audit_events where seq = ${victim.seq}`
    await behindTheAppsBack(app, (sql) => sql`update audit_events set data = data || '{"n": 999}' where seq = ${victim.seq}`)
    const after = await verifyChain(ownerSql(app), DEFAULT_ORG_ID)
    expect(after).toMatchObject({ ok: false, seq: victim.seq, id: victim.id, reason: expect.stringMatching(/hash does not match/) })
    expect(after.verified).toBe(Number(victim.seq) - 1)

    // Putting the row back restores the chain: the hash covers content, nothing else.
    await behindTheAppsBack(app, (sql) => sql`update audit_events set data = ${sql.json(original!.data as never)} where seq = ${victim.seq}`)
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toEqual({ ok: true, verified: before.ok ? before.verified : 0 })
  })

  it('catches a rewritten event whose hash was recomputed, at the next event', async () => {
    const app = await context.build()
    await Promise.all(Array.from({ length: 5 }, (_, n) => app.audit.record(event(n))))
    const victim = await eventAt(app, 2)
    const next = await eventAt(app, 1)
    const [original] = await ownerSql(app)<Array<{ hash: string }>>`select hash from audit_events where seq = ${victim.seq}`
    await behindTheAppsBack(app, (sql) => sql`update audit_events set hash = ${'f'.repeat(64)} where seq = ${victim.seq}`)
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: false, seq: victim.seq, reason: expect.stringMatching(/hash does not match/) })
    await behindTheAppsBack(app, (sql) => sql`update audit_events set hash = ${original!.hash} where seq = ${victim.seq}`)
    await behindTheAppsBack(app, (sql) => sql`update audit_events set prev_hash = ${'e'.repeat(64)} where seq = ${next.seq}`)
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: false, seq: next.seq, id: next.id, reason: expect.stringMatching(/prev_hash/) })
    await behindTheAppsBack(app, (sql) => sql`update audit_events set prev_hash = ${original!.hash} where seq = ${next.seq}`)
    expect(await verifyChain(ownerSql(app), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })
})

describe('key material at start-up', () => {
  async function keyEvents (app: App): Promise<Array<{ type: string, kid: string }>> {
    return await ownerSql(app)`select type, data->>'kid' as kid from audit_events where type like 'key.%' order by seq`
  }

  it('records key.current once, then the new key and the published previous one after a rotation, idempotently', async () => {
    const first = await context.build()
    const initial = await keyEvents(first)
    expect(initial).toEqual([{ type: 'key.current', kid: first.keys.current.kid }])
    await first.close()

    // A restart with the same keys records nothing.
    const again = await context.build()
    expect(await keyEvents(again)).toEqual(initial)
    await again.close()

    // A rotation: a new key pair, the old public key still published.
    const rotated = generateSigningKeyPair()
    const env = {
      JWT_PRIVATE_KEY: rotated.privateKey,
      JWT_PUBLIC_KEY: rotated.publicKey,
      JWT_PREVIOUS_PUBLIC_KEYS: readFileSync(join(context.dataDir, 'jwt-public.pem'), 'utf8')
    }
    const afterRotation = await context.build(env)
    const expected = [
      ...initial,
      { type: 'key.current', kid: afterRotation.keys.current.kid },
      { type: 'key.previous_published', kid: first.keys.current.kid }
    ]
    expect(await keyEvents(afterRotation)).toEqual(expected)
    await afterRotation.close()

    const restarted = await context.build(env)
    expect(await keyEvents(restarted)).toEqual(expected)
    const [current] = await ownerSql(restarted)`select actor, data from audit_events where type = 'key.current' order by seq desc limit 1`
    expect(current).toMatchObject({ actor: 'system', data: { kid: afterRotation.keys.current.kid, previous_kid: first.keys.current.kid, alg: 'RS256' } })
    expect(await verifyChain(ownerSql(restarted), DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })
})

describe('npm run audit:verify', () => {
  async function cli (): Promise<{ code: number, stdout: string, stderr: string }> {
    const env = { ...process.env, DATABASE_URL: context.database.url, DATA_DIR: context.dataDir, NODE_ENV: 'test' }
    try {
      const { stdout, stderr } = await run('npx', ['tsx', 'src/audit-verify-cli.ts'], { env, timeout: 60_000 })
      return { code: 0, stdout, stderr }
    } catch (error) {
      const failed = error as { code: number, stdout: string, stderr: string }
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
    }
  }

  it('prints N events verified and exits 0, then names the broken event and exits 1', async () => {
    const app = await context.build()
    await Promise.all(Array.from({ length: 10 }, (_, n) => app.audit.record(event(n))))
    const [{ count }] = await ownerSql(app)<[{ count: number }]>`select count(*)::int as count from audit_events`
    const victim = await eventAt(app, 3)
    await app.close()

    const good = await cli()
    expect(good).toMatchObject({ code: 0, stdout: `${count} events verified\n` })

    const tamper = await context.build()
    await behindTheAppsBack(tamper, (sql) => sql`update audit_events set actor = 'nobody' where seq = ${victim.seq}`)
    await tamper.close()
    const bad = await cli()
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain(`seq ${victim.seq} (id ${victim.id})`)
    expect(bad.stderr).toMatch(/hash does not match/)
  })
})
