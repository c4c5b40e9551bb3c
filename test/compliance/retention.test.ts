import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { compactVerify, createLocalJWKSet } from 'jose'
import { describe, expect, it } from 'vitest'
import { archiveAuditTrail, checkpointKeys, checkpointsOf, serverRetentionDeps, verifyArchive, verifyChain, verifyCheckpoints, type ArchiveOutcome } from '../../plugins/audit/index.js'
import type { App } from '../../src/app.js'
import { DEFAULT_ORG_ID, inOrganization } from '../../src/database.js'
import { auditEvents, authHeaders, createAgent } from '../support/management.js'
import { ownerSql, setupTestContext } from '../helper.js'

const context = setupTestContext()
const run = promisify(execFile)
// These tests run the commands several times, each a tsx process compiling the sources: slow on a busy machine.
const CLI_TEST_TIMEOUT_MS = 180_000

async function archiveNow (app: App, orgIds?: Array<{ id: string, slug: string }>): Promise<ArchiveOutcome[]> {
  return await archiveAuditTrail(serverRetentionDeps(app), new Date(), orgIds)
}

async function cli (script: string, archiveDir: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const env = { ...process.env, DATABASE_URL: context.database.url, DATA_DIR: context.dataDir, NODE_ENV: 'test', AUDIT_ARCHIVE_DIR: archiveDir }
  try {
    const { stdout, stderr } = await run('npx', ['tsx', script, ...args], { env, timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number, stdout: string, stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

async function verifyCli (archiveDir: string, extra: string[] = []): Promise<{ code: number, stdout: string, stderr: string }> {
  const env = { ...process.env, DATABASE_URL: context.database.url, DATA_DIR: context.dataDir, NODE_ENV: 'test', AUDIT_ARCHIVE_DIR: archiveDir }
  try {
    const { stdout, stderr } = await run('npx', ['tsx', 'src/audit-verify-cli.ts', ...extra], { env, timeout: 60_000 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number, stdout: string, stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

describe('audit retention', () => {
  it('archives, prunes with a signed checkpoint, verifies from it, and detects an edited line or a removed file', async () => {
    const archiveDir = mkdtempSync(join(tmpdir(), 'agentidp-archive-'))
    const app = await context.build({ AUDIT_ARCHIVE_DIR: archiveDir })
    for (let n = 0; n < 3; n++) await createAgent(app, { name: `first ${n}`, owner: 'team' })
    const before = await ownerSql(app)<Array<{ seq: string }>>`select seq::text from audit_events where org_id = ${DEFAULT_ORG_ID} order by audit_events.seq`
    const head = before.at(-1)?.seq as string

    // An instant before every event archives nothing.
    expect(await archiveAuditTrail(serverRetentionDeps(app), new Date(0))).toEqual([{ org: 'default', outcome: 'nothing' }])

    const [first] = await archiveNow(app)
    // Everything but the head: the appender continues from it.
    expect(first).toMatchObject({ org: 'default', outcome: 'archived', first_seq: '1', last_seq: String(Number(head) - 1), events: Number(head) - 1 })
    const kept = await ownerSql(app)<Array<{ seq: string }>>`select seq::text from audit_events where org_id = ${DEFAULT_ORG_ID} order by audit_events.seq`
    expect(kept[0]?.seq).toBe(head)
    const pruned = (await auditEvents(app, 'audit.pruned')).at(-1)
    expect(pruned).toMatchObject({ actor: 'system', data: { first_seq: '1', last_seq: String(Number(head) - 1), archive_file: (first as { file: string }).file } })

    // The checkpoint is a compact JWS of the issuer's key, which its JWKS verifies.
    const checkpoints = await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => await checkpointsOf(tx))
    expect(checkpoints).toHaveLength(1)
    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    const verified = await compactVerify(checkpoints[0]?.jws as string, createLocalJWKSet(jwks))
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toMatchObject({ org_id: DEFAULT_ORG_ID, iss: app.config.issuer, seq: String(Number(head) - 1), hash: checkpoints[0]?.hash })
    expect(verified.protectedHeader.typ).toBe('audit-checkpoint+jwt')

    // The table verifies from the checkpoint; a second prune continues the archive.
    expect(await verifyChain(app.sql, DEFAULT_ORG_ID)).toMatchObject({ ok: true, from: { seq: String(Number(head) - 1) } })
    for (let n = 0; n < 2; n++) await createAgent(app, { name: `second ${n}`, owner: 'team' })
    const [second] = await archiveNow(app)
    expect(second).toMatchObject({ outcome: 'archived', first_seq: String(Number(head)) })
    const all = await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => await checkpointsOf(tx))
    expect(await verifyCheckpoints(all, DEFAULT_ORG_ID, await checkpointKeys(app.sql, app.keys, DEFAULT_ORG_ID))).toEqual({ ok: true, checkpoints: 2 })
    expect(await verifyArchive(archiveDir, DEFAULT_ORG_ID, all)).toMatchObject({ ok: true, files: 2 })
    expect(await verifyChain(app.sql, DEFAULT_ORG_ID)).toMatchObject({ ok: true })
    await app.close()

    const good = await verifyCli(archiveDir, ['--archive', archiveDir])
    expect(good.stderr).toBe('')
    expect(good).toMatchObject({ code: 0 })
    expect(good.stdout).toMatch(/^\d+ events verified, \d+ archived events verified\n$/)
    expect((await verifyCli(archiveDir)).code).toBe(0)

    const directory = join(archiveDir, DEFAULT_ORG_ID)
    const [file1, file2] = readdirSync(directory).sort() as [string, string]
    const path1 = join(directory, file1)
    const original = readFileSync(path1, 'utf8')
    writeFileSync(path1, original.replace('"actor":"test-admin"', '"actor":"someone-else"'))
    const edited = await verifyCli(archiveDir, ['--archive', archiveDir])
    expect(edited.code).toBe(1)
    expect(edited.stderr).toMatch(/line \d+ \(seq \d+\): hash does not match the content/)
    writeFileSync(path1, original)

    renameSync(join(directory, file2), join(archiveDir, file2))
    const removed = await verifyCli(archiveDir, ['--archive', archiveDir])
    expect(removed.code).toBe(1)
    expect(removed.stderr).toContain('is missing from the archive')
    renameSync(join(archiveDir, file2), join(directory, file2))

    renameSync(path1, join(archiveDir, file1))
    const firstRemoved = await verifyCli(archiveDir, ['--archive', archiveDir])
    expect(firstRemoved.code).toBe(1)
    expect(firstRemoved.stderr).toContain('a file before it is missing')
    renameSync(join(archiveDir, file1), path1)
    expect((await verifyCli(archiveDir, ['--archive', archiveDir])).code).toBe(0)
  }, CLI_TEST_TIMEOUT_MS)

  it('prunes only through audit_prune(): the app role cannot delete by setting the marker itself, nor write or change a checkpoint', async () => {
    const archiveDir = mkdtempSync(join(tmpdir(), 'agentidp-archive-'))
    const app = await context.build({ AUDIT_ARCHIVE_DIR: archiveDir })
    await createAgent(app, { name: 'guarded', owner: 'team' })
    await createAgent(app, { name: 'guarded 2', owner: 'team' })
    const [headRow] = await ownerSql(app)<Array<{ seq: string, hash: string }>>`select seq::text, hash from audit_events where org_id = ${DEFAULT_ORG_ID} order by audit_events.seq desc limit 1`
    const [firstRow] = await ownerSql(app)<Array<{ seq: string, hash: string }>>`select seq::text, hash from audit_events where org_id = ${DEFAULT_ORG_ID} order by audit_events.seq limit 1`
    const asApp = async (work: (tx: any) => Promise<unknown>): Promise<unknown> =>
      await inOrganization(app.sql, DEFAULT_ORG_ID, async (tx) => await work(tx)).catch((error: { message: string }) => error)
    expect(await asApp(async (tx) => {
      await tx`select set_config('agentidp.audit_prune', 'on', true)`
      return await tx`delete from audit_events where seq = ${firstRow?.seq as string}`
    })).toMatchObject({ message: 'audit_events is append-only: DELETE is not allowed' })
    expect(await asApp(async (tx) => await tx`update audit_events set actor = 'x' where seq = ${firstRow?.seq as string}`)).toMatchObject({ message: 'audit_events is append-only: UPDATE is not allowed' })
    expect(await asApp(async (tx) => {
      await tx`select set_config('agentidp.audit_prune', 'on', true)`
      return await tx`insert into audit_checkpoints (seq, hash, first_seq, archive_file, archive_sha256, jws) values (1, 'h', 1, 'f', 's', 'j')`
    })).toMatchObject({ message: expect.stringContaining('audit_checkpoints are written by audit_prune() only') })
    // The function refuses the head of the chain, and a hash that is not the event's.
    expect(await asApp(async (tx) => await tx`select audit_prune(${headRow?.seq as string}, ${headRow?.hash as string}, ${firstRow?.seq as string}, 'f', 's', 'j', now())`)).toMatchObject({ message: expect.stringContaining('is never pruned') })
    expect(await asApp(async (tx) => await tx`select audit_prune(${firstRow?.seq as string}, 'not-the-hash', ${firstRow?.seq as string}, 'f', 's', 'j', now())`)).toMatchObject({ message: expect.stringContaining('does not have the hash given') })
    expect(await asApp(async (tx) => await tx`select audit_prune(1, 'x', 1, 'f', 's', 'j', now() + interval '1 day')`)).toMatchObject({ message: expect.stringContaining('is in the future') })

    // After a real prune, the checkpoint cannot be changed or removed.
    await archiveNow(app)
    expect(await asApp(async (tx) => await tx`update audit_checkpoints set hash = 'forged'`)).toMatchObject({ message: expect.stringContaining('UPDATE is not allowed') })
    expect(await asApp(async (tx) => await tx`delete from audit_checkpoints`)).toMatchObject({ message: expect.stringContaining('DELETE is not allowed') })
    expect(await verifyChain(app.sql, DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('prunes each organization into its own archive, its checkpoint signed by its own key', async () => {
    const archiveDir = mkdtempSync(join(tmpdir(), 'agentidp-archive-'))
    const app = await context.build({ AUDIT_ARCHIVE_DIR: archiveDir })
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'retained', name: 'Retained' } })
    expect(created.statusCode, created.body).toBe(201)
    const org = created.json()
    const token = (await app.inject({ method: 'POST', url: '/o/retained/oauth2/token', payload: `grant_type=client_credentials&client_id=${org.admin.client_id}&client_secret=${encodeURIComponent(org.admin.client_secret)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).json().access_token
    expect((await app.inject({ method: 'POST', url: '/o/retained/api/v1/agents', headers: { authorization: `Bearer ${token}` }, payload: { name: 'acme bot', owner: 'acme' } })).statusCode).toBe(201)

    const outcomes = await archiveNow(app, [{ id: org.id, slug: 'retained' }])
    expect(outcomes).toEqual([expect.objectContaining({ org: 'retained', outcome: 'archived', first_seq: '1' })])
    expect(readdirSync(join(archiveDir, org.id))).toHaveLength(1)
    const [checkpoint] = await inOrganization(app.sql, org.id, async (tx) => await checkpointsOf(tx))
    const jwks = (await app.inject({ method: 'GET', url: '/o/retained/.well-known/jwks.json' })).json()
    const verified = await compactVerify(checkpoint?.jws as string, createLocalJWKSet(jwks))
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toMatchObject({ org_id: org.id, iss: `${app.config.issuer}/o/retained` })
    // The default organization's key does not verify it.
    expect(await verifyCheckpoints([checkpoint as never], org.id, app.keys.byKid)).toMatchObject({ ok: false })
    expect(await verifyCheckpoints([checkpoint as never], org.id, await checkpointKeys(app.sql, app.keys, org.id))).toEqual({ ok: true, checkpoints: 1 })
    expect(await verifyChain(app.sql, org.id)).toMatchObject({ ok: true })
    expect(await verifyChain(app.sql, DEFAULT_ORG_ID)).toMatchObject({ ok: true })
  })

  it('npm run audit:archive -- --before <instant> [--org <slug>] archives by hand, and refuses a future or malformed instant', async () => {
    const archiveDir = mkdtempSync(join(tmpdir(), 'agentidp-archive-'))
    const app = await context.build({ AUDIT_ARCHIVE_DIR: archiveDir })
    await createAgent(app, { name: 'by hand', owner: 'team' })
    await createAgent(app, { name: 'by hand 2', owner: 'team' })
    await app.close()
    const archive = await cli('src/audit-archive-cli.ts', archiveDir, ['--before', new Date().toISOString(), '--org', 'default'])
    expect(archive.stderr).toBe('')
    expect(archive).toMatchObject({ code: 0 })
    expect(archive.stdout).toMatch(/^default: \d+ events archived to [0-9a-f-]+\/\d{19}-\d{19}\.ndjson and pruned \(seq \d+ to \d+\)\n$/)
    expect((await cli('src/audit-archive-cli.ts', archiveDir, ['--before', new Date(Date.now() + 3_600_000).toISOString()]))).toMatchObject({ code: 2, stderr: 'audit:archive: --before must not be in the future\n' })
    expect((await cli('src/audit-archive-cli.ts', archiveDir, ['--before', 'yesterday'])).code).toBe(2)
    expect((await cli('src/audit-archive-cli.ts', archiveDir, [])).stderr).toContain('--before is required')
    // The table verifies from the new checkpoint (the earlier tests' archives are in other directories).
    const verified = await verifyCli(archiveDir)
    expect(verified.stderr).toBe('')
    expect(verified.code).toBe(0)
  }, CLI_TEST_TIMEOUT_MS)
})
