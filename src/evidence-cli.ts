/**
 * `npm run evidence -- --out <dir> [--org <slug>]`: writes the SOC 2 evidence bundle of the default organization (or
 * the one named) into the directory, as GET /api/v1/reports/evidence zips it (docs/devops/compliance.md). Exit 0,
 * or 2 when it could not.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { allOrganizations, organizationSigningKeys } from '../plugins/organizations/public.js'
import { evidenceBundle } from '../plugins/reports/evidence.js'
import { loadIssuerKeys, openDatabase, option, selectOrganizations } from './cli/offline.js'
import { ConfigError, loadConfig } from './config.js'
import { DEFAULT_ORG_ID } from './database.js'
import { loadDotEnv } from './dotenv.js'

async function main (): Promise<number> {
  loadDotEnv()
  const config = loadConfig()
  const args = process.argv.slice(2)
  const out = option(args, '--out')
  if (out === undefined) throw new ConfigError('--out', 'is required: the directory the bundle is written to')
  const { keys, keyEncryptionKey } = await loadIssuerKeys(config)
  const { sql, close } = await openDatabase(config)
  try {
    const [organization] = await selectOrganizations(await allOrganizations(sql), option(args, '--org') ?? 'default')
    const { id, slug } = organization as { id: string, slug: string }
    const orgKeys = await organizationSigningKeys(sql, keyEncryptionKey, keys, id)
    if (orgKeys === undefined) throw new ConfigError('--org', `${slug} has no signing key that can be opened (KEY_ENCRYPTION_KEY)`)
    const issuer = id === DEFAULT_ORG_ID ? config.issuer : `${config.issuer}/o/${slug}`
    const files = await evidenceBundle(sql, config, { orgId: id, issuer, keys: orgKeys })
    const directory = resolve(out)
    await mkdir(directory, { recursive: true, mode: 0o700 })
    for (const file of files) await writeFile(join(directory, file.path), file.content, { mode: 0o600 })
    console.log(`evidence of ${slug} written to ${directory}: ${files.map((file) => file.path).join(', ')}`)
    return 0
  } finally {
    await close()
  }
}

main().then((code) => { process.exitCode = code }, (error: unknown) => {
  if (error instanceof ConfigError) console.error(`evidence: ${error.message}`)
  else console.error(`evidence: ${(error as Error).message ?? String(error)}`)
  process.exitCode = 2
})
