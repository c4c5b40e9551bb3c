import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { inflateRawSync } from 'node:zlib'
import { compactVerify, createLocalJWKSet, createRemoteJWKSet } from 'jose'
import { describe, expect, it } from 'vitest'
import { AdminScope } from '../../src/scopes.js'
import { authHeaders, createAgent } from '../support/management.js'
import { setupTestContext } from '../helper.js'

const context = setupTestContext()
const run = promisify(execFile)

/** The files of a zip archive, read through its central directory (stored or deflated entries). */
function unzip (zip: Buffer): Map<string, Buffer> {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]))
  const count = zip.readUInt16LE(end + 10)
  let at = zip.readUInt32LE(end + 16)
  const files = new Map<string, Buffer>()
  for (let n = 0; n < count; n++) {
    expect(zip.readUInt32LE(at)).toBe(0x02014b50)
    const method = zip.readUInt16LE(at + 10)
    const size = zip.readUInt32LE(at + 20)
    const nameLength = zip.readUInt16LE(at + 28)
    const extraLength = zip.readUInt16LE(at + 30)
    const commentLength = zip.readUInt16LE(at + 32)
    const offset = zip.readUInt32LE(at + 42)
    const name = zip.subarray(at + 46, at + 46 + nameLength).toString('utf8')
    const dataAt = offset + 30 + zip.readUInt16LE(offset + 26) + zip.readUInt16LE(offset + 28)
    const data = zip.subarray(dataAt, dataAt + size)
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data))
    at += 46 + nameLength + extraLength + commentLength
  }
  return files
}

const EXPECTED_FILES = ['access-review.csv', 'access-review.json', 'audit-verification.json', 'configuration.json', 'control-mapping.md', 'key-rotation-history.json', 'last-reviews.json', 'manifest.json', 'manifest.jws']

function checkManifest (files: Map<string, Buffer>): { files: Array<{ path: string, sha256: string }> } {
  expect([...files.keys()].sort()).toEqual(EXPECTED_FILES)
  const manifest = JSON.parse((files.get('manifest.json') as Buffer).toString('utf8'))
  expect(manifest.files.map((file: { path: string }) => file.path).sort()).toEqual(EXPECTED_FILES.filter((path) => !path.startsWith('manifest.')))
  for (const file of manifest.files) expect(createHash('sha256').update(files.get(file.path) as Buffer).digest('hex'), file.path).toBe(file.sha256)
  return manifest
}

describe('evidence bundle', () => {
  it('GET /api/v1/reports/evidence: a zip whose manifest.jws verifies with jose against the server JWKS, secrets removed', async () => {
    const app = await context.build({ BOOTSTRAP_CLIENT_ID: 'evidence-admin', BOOTSTRAP_CLIENT_SECRET: 'a'.repeat(40), CREDENTIAL_MAX_AGE_DAYS: '90' })
    const agent = await createAgent(app, { name: 'evidenced', owner: 'team' })
    expect((await app.inject({ method: 'POST', url: '/api/v1/reviews', headers: await authHeaders(app, [AdminScope.ReviewsWrite], 'auditor'), payload: { agent_id: agent.id, decision: 'keep' } })).statusCode).toBe(201)
    const response = await app.inject({ method: 'GET', url: '/api/v1/reports/evidence', headers: await authHeaders(app, [AdminScope.AuditRead]) })
    expect(response.statusCode, response.body).toBe(200)
    expect(response.headers['content-type']).toBe('application/zip')
    const files = unzip(response.rawPayload)
    const manifest = checkManifest(files)

    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    const jwks = createRemoteJWKSet(new URL(`${address}/.well-known/jwks.json`))
    const verified = await compactVerify((files.get('manifest.jws') as Buffer).toString('utf8'), jwks)
    expect(Buffer.from(verified.payload).equals(files.get('manifest.json') as Buffer)).toBe(true)
    expect(verified.protectedHeader).toMatchObject({ kid: app.keys.current.kid, typ: 'evidence-manifest+json' })
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(manifest)

    const configuration = (files.get('configuration.json') as Buffer).toString('utf8')
    expect(configuration).not.toContain('a'.repeat(40))
    expect(configuration).not.toContain('PRIVATE KEY')
    expect(JSON.parse(configuration)).toMatchObject({ bootstrap_client_secret: { set: true }, compliance: { credential_max_age_days: 90 } })
    const reviews = JSON.parse((files.get('last-reviews.json') as Buffer).toString('utf8')).reviews
    expect(reviews.find((review: { agent_id: string }) => review.agent_id === agent.id).last_review).toMatchObject({ decision: 'keep', reviewer: 'auditor' })
    expect(JSON.parse((files.get('audit-verification.json') as Buffer).toString('utf8'))).toMatchObject({ chain: { ok: true }, checkpoints_signature: { ok: true }, retention: { audit_retention_days: null } })
    expect(JSON.parse((files.get('key-rotation-history.json') as Buffer).toString('utf8'))).toMatchObject({ current_kid: app.keys.current.kid, events: [expect.objectContaining({ type: 'key.current' })] })
    const mapping = (files.get('control-mapping.md') as Buffer).toString('utf8')
    for (const control of ['CC6.1', 'CC6.2', 'CC6.3', 'CC6.6', 'CC7.2', 'CC7.3']) expect(mapping).toContain(control)
    expect(JSON.parse((files.get('access-review.json') as Buffer).toString('utf8')).agents.map((item: { id: string }) => item.id)).toContain(agent.id)

    const refused = await app.inject({ method: 'GET', url: '/api/v1/reports/evidence', headers: await authHeaders(app, [AdminScope.AgentsRead]) })
    expect(refused.statusCode).toBe(403)
  })

  it('an organization\'s bundle holds its own agents only and is signed by its own key', async () => {
    const app = await context.build()
    const created = await app.inject({ method: 'POST', url: '/api/v1/organizations', headers: await authHeaders(app), payload: { slug: 'evidenced', name: 'Evidenced' } })
    expect(created.statusCode, created.body).toBe(201)
    const org = created.json()
    const defaultAgent = await createAgent(app, { name: 'not theirs' })
    const token = (await app.inject({ method: 'POST', url: '/o/evidenced/oauth2/token', payload: `grant_type=client_credentials&client_id=${org.admin.client_id}&client_secret=${encodeURIComponent(org.admin.client_secret)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } })).json().access_token
    const response = await app.inject({ method: 'GET', url: '/o/evidenced/api/v1/reports/evidence', headers: { authorization: `Bearer ${token}` } })
    expect(response.statusCode, response.body).toBe(200)
    const files = unzip(response.rawPayload)
    checkManifest(files)
    const jwks = (await app.inject({ method: 'GET', url: '/o/evidenced/.well-known/jwks.json' })).json()
    await compactVerify((files.get('manifest.jws') as Buffer).toString('utf8'), createLocalJWKSet(jwks))
    const defaultJwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    await expect(compactVerify((files.get('manifest.jws') as Buffer).toString('utf8'), createLocalJWKSet(defaultJwks))).rejects.toThrow()
    const ids = JSON.parse((files.get('access-review.json') as Buffer).toString('utf8')).agents.map((item: { id: string }) => item.id)
    expect(ids).toEqual([org.admin.agent_id])
    expect(ids).not.toContain(defaultAgent.id)
    // The access review of the organization too.
    const review = await app.inject({ method: 'GET', url: '/o/evidenced/api/v1/reports/access-review', headers: { authorization: `Bearer ${token}` } })
    expect(review.json().agents.map((item: { id: string }) => item.id)).toEqual([org.admin.agent_id])
    expect(review.json().issuer).toBe(`${app.config.issuer}/o/evidenced`)
  })

  it('npm run evidence -- --out <dir> writes the same files, the manifest signed by the issuer key', async () => {
    const app = await context.build()
    await createAgent(app, { name: 'on disk', owner: 'team' })
    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
    await app.close()
    const out = join(mkdtempSync(join(tmpdir(), 'agentidp-evidence-')), 'bundle')
    const env = { ...process.env, DATABASE_URL: context.database.url, DATA_DIR: context.dataDir, NODE_ENV: 'test' }
    const { stdout } = await run('npx', ['tsx', 'src/evidence-cli.ts', '--out', out], { env, timeout: 60_000 })
    expect(stdout).toContain(`evidence of default written to ${out}`)
    const files = new Map(readdirSync(out).map((name) => [name, readFileSync(join(out, name))]))
    checkManifest(files)
    await compactVerify((files.get('manifest.jws') as Buffer).toString('utf8'), createLocalJWKSet(jwks))
    const missing = await run('npx', ['tsx', 'src/evidence-cli.ts'], { env, timeout: 60_000 }).catch((error: { code: number, stderr: string }) => error)
    expect(missing).toMatchObject({ code: 2, stderr: 'evidence: --out is required: the directory the bundle is written to\n' })
  }, 120_000)
})
