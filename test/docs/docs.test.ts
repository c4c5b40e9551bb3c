import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { projectRoot } from '../../src/paths.js'
import { setupTestContext } from '../helper.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const read = (path: string): string => readFileSync(join(projectRoot, path), 'utf8')

/** Every Markdown file under docs/, and the README. */
function markdownFiles (): string[] {
  const files = ['README.md']
  const walk = (directory: string): void => {
    for (const entry of readdirSync(join(projectRoot, directory))) {
      const path = join(directory, entry)
      if (statSync(join(projectRoot, path)).isDirectory()) walk(path)
      else if (entry.endsWith('.md')) files.push(path)
    }
  }
  walk('docs')
  return files
}

/** The first cell of each row of the Markdown tables that follow a heading, keyed by heading. */
function tablesByHeading (markdown: string): Map<string, string[]> {
  const tables = new Map<string, string[]>()
  let heading = ''
  for (const line of markdown.split('\n')) {
    const title = /^#{1,6} (.+)$/.exec(line)?.[1]
    if (title !== undefined) heading = title.trim()
    const cell = /^\| `([^`]+)` \|/.exec(line)?.[1]
    if (cell !== undefined) tables.set(heading, [...(tables.get(heading) ?? []), cell])
  }
  return tables
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const anchorOf = (heading: string): string => heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')

describe('docs agree with the code', () => {
  it('every variable in environment-variables.md is read by the config, and every variable the config reads is there', () => {
    const documented = tablesByHeading(read('docs/devops/environment-variables.md')).get('Environment variables') ?? []
    const read_ = [...read('src/config.ts').matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map((match) => match[1] as string)
    expect(new Set(documented)).toEqual(new Set(read_))
    expect(documented.length).toBeGreaterThan(15)
  })

  it('every table and column in database.md exists after migrations, and every table is described', async () => {
    const app = await context.build()
    const rows = await app.sql<Array<{ table_name: string, column_name: string }>>`
      select table_name, column_name from information_schema.columns where table_schema = 'public'`
    const actual = new Map<string, Set<string>>()
    for (const row of rows) actual.set(row.table_name, (actual.get(row.table_name) ?? new Set()).add(row.column_name))
    const documented = tablesByHeading(read('docs/devops/database.md'))
    for (const [table, columns] of actual) {
      expect(documented.get(table), `table ${table} is not described in database.md`).toBeDefined()
      expect(new Set(documented.get(table)), `columns of ${table}`).toEqual(columns)
    }
    for (const heading of documented.keys()) {
      if (/^[a-z_]+$/.test(heading)) expect(actual.has(heading), `database.md describes ${heading}, which does not exist`).toBe(true)
    }
  })

  it('ports in the docs agree with compose.yaml', () => {
    const compose = read('compose.yaml')
    const published = [...compose.matchAll(/ports: \["(\d+):(\d+)"\]/g)].map((match) => match[1])
    expect(published.sort()).toEqual(['3000', '5432', '6379'])
    const architecture = read('docs/devops/architecture.md')
    for (const port of published) expect(architecture).toContain(`:${port}`)
    expect(read('src/config.ts')).toContain("integer(env, 'PORT', 3000")
    const environment = read('docs/devops/environment-variables.md')
    expect(environment).toMatch(/\| `PORT` \| no \| `3000` \|/)
  })

  it('every relative link resolves, anchors included', () => {
    for (const file of markdownFiles()) {
      const text = read(file)
      for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = match[1] as string
        if (/^[a-z]+:/.test(target)) continue
        const [path, anchor] = target.split('#') as [string, string | undefined]
        const resolved = path === '' ? join(projectRoot, file) : resolve(join(projectRoot, dirname(file)), path)
        expect(existsSync(resolved), `${file} links to ${target}`).toBe(true)
        if (anchor !== undefined && resolved.endsWith('.md')) {
          const headings = [...readFileSync(resolved, 'utf8').matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1] as string))
          expect(headings, `${file} links to #${anchor} in ${relative(projectRoot, resolved)}`).toContain(anchor)
        }
      }
    }
  })

  it('the documented key generation works: npm run keys:generate, and the openssl commands in security.md', () => {
    const generated = spawnSync(process.execPath, ['--import', 'tsx', 'src/keys-cli.ts'], { cwd: projectRoot, encoding: 'utf8' })
    expect(generated.status).toBe(0)
    expect(generated.stdout).toMatch(/^JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\n[^\n]+-----END PRIVATE KEY-----"\nJWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\\n[^\n]+-----END PUBLIC KEY-----"\n$/)
    expect(read('package.json')).toContain('"keys:generate"')
    if (spawnSync('openssl', ['version']).status !== 0) return
    const security = read('docs/devops/security.md')
    const commands = [...security.matchAll(/^openssl .+$/gm)].map((match) => match[0])
    expect(commands.length).toBeGreaterThanOrEqual(2)
    const directory = mkdtempSync(join(tmpdir(), 'agentidp-openssl-'))
    for (const command of commands) {
      expect(spawnSync('sh', ['-c', command], { cwd: directory }).status, command).toBe(0)
    }
    const pem = readFileSync(join(directory, 'jwt-private.pem'), 'utf8')
    expect(pem).toContain('BEGIN PRIVATE KEY')
  })

  it('the documented migration command runs and prints what database.md shows', async () => {
    expect(JSON.parse(read('package.json')).scripts['db:migrate']).toBeDefined()
    // This file's database is migrated already: the documented re-run output.
    const run = ServerProcess.start({ DATABASE_URL: context.database.url }, 'src/migrate-cli.ts')
    expect(await run.exited).toBe(0)
    expect(run.stdout.trim()).toBe('database is up to date')
    expect(read('docs/devops/database.md')).toContain('database is up to date')
    const documentedLines = [...read('docs/devops/database.md').matchAll(/^ {2}applied migration (\d{4}_[a-z0-9_]+)$/gm)].map((m) => m[1])
    const files = readdirSync(join(projectRoot, 'sql')).map((file) => file.replace(/\.sql$/, '')).sort()
    expect(documentedLines).toEqual(files)
  })
})
