import { spawnSync } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadSigningKeys } from '../../plugins/infra/keys.js'
import { COMPLETE_MARKER_KEY, refillFenceKey } from '../../plugins/revocation/state.js'
import { loadConfig } from '../../src/config.js'
import { projectRoot } from '../../src/paths.js'
import { agentChangedKey, credentialChangedKey, organizationChangedKey, revokedTokenKey } from '../../plugins/revocation/keys.js'
import { SERVER_NODE_FLAGS, SERVER_PROCESS_ENV } from '../../src/runtime.js'
import { monthlyUsageKey } from '../../plugins/tokens/usage-keys.js'
import { dpopProofKey } from '../../plugins/tokens/dpop-keys.js'
import { DEFAULT_ORG_ID } from '../../src/database.js'
import { createEmptyDatabase, ownerSql, setupTestContext, withSql } from '../helper.js'
import { configVariables } from '../support/config-variables.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const read = (path: string): string => readFileSync(join(projectRoot, path), 'utf8')

/** Files under a folder of the project (relative paths), recursively, that pass the filter. */
function filesUnder (directory: string, keep: (path: string) => boolean): string[] {
  const files: string[] = []
  for (const entry of readdirSync(join(projectRoot, directory))) {
    const path = join(directory, entry)
    if (statSync(join(projectRoot, path)).isDirectory()) files.push(...filesUnder(path, keep))
    else if (keep(path)) files.push(path)
  }
  return files
}

/** Every Markdown file under docs/, and the README. */
const markdownFiles = (): string[] => ['README.md', ...filesUnder('docs', (path) => path.endsWith('.md'))]

/** The TypeScript sources the server runs. */
const sourceFiles = (): string[] => ['src', 'plugins'].flatMap((directory) => filesUnder(directory, (path) => path.endsWith('.ts')))

/** The rows (cells, backticks kept) of the Markdown tables under each heading, keyed by heading. */
function tablesByHeading (markdown: string): Map<string, string[][]> {
  const tables = new Map<string, string[][]>()
  let heading = ''
  for (const line of markdown.split('\n')) {
    const title = /^#{1,6} (.+)$/.exec(line)?.[1]
    if (title !== undefined) heading = title.trim()
    if (!/^\| `/.test(line)) continue
    const cells = line.slice(1, line.endsWith('|') ? -1 : undefined).split(' | ').map((cell) => cell.trim())
    tables.set(heading, [...(tables.get(heading) ?? []), cells])
  }
  return tables
}

const unquote = (cell: string): string => cell.replace(/^`|`$/g, '')

/** The text of each section (from its heading to the next heading of any level), keyed by heading. */
function sections (markdown: string): Map<string, string> {
  const result = new Map<string, string>()
  let heading = ''
  for (const line of markdown.split('\n')) {
    const title = /^#{1,6} (.+)$/.exec(line)?.[1]
    if (title !== undefined) heading = title.trim()
    else result.set(heading, `${result.get(heading) ?? ''}${line}\n`)
  }
  return result
}

/** Fenced code blocks of a Markdown text (also indented ones, inside list items). */
const codeBlocks = (markdown: string): string[] => [...markdown.matchAll(/^ *```[a-z]*\n([\s\S]*?)^ *```$/gm)].map((match) => match[1] as string)

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
const anchorOf = (heading: string): string => heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')

/** `KEY=value` lines, double quotes around a value removed (what compose and shells do with .env files). */
function parseDotenv (text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line.trim())
    if (match !== null) env[match[1] as string] = (match[2] as string).replace(/^"(.*)"$/, '$1')
  }
  return env
}

/** The TypeScript source a `node dist/….js` package script runs, so tests run it with tsx and need no build. */
function sourceOfScript (name: string): string {
  const script = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts[name]
  const target = /^node dist\/(\S+)\.js$/.exec(script ?? '')?.[1]
  expect(target, `package.json script ${name} runs a compiled file: ${script}`).toBeDefined()
  const source = `${target as string}.ts`
  expect(existsSync(join(projectRoot, source)), source).toBe(true)
  return source
}

/**
 * Runs a TypeScript CLI of this project as its `npm run` script would, through tsx. Asynchronously: on the embedded
 * default the test database is served from this very process, which must keep answering meanwhile.
 */
async function runCli (source: string, env: Record<string, string>, args: string[] = []): Promise<{ status: number | null, stdout: string, stderr: string }> {
  const run = ServerProcess.start(env, source, args)
  const status = await run.exited
  return { status, stdout: run.stdout, stderr: run.stderr }
}

/**
 * The message literals of every pino call (`log.info(…, 'message')`) in a source: single-quoted strings that are
 * arguments of the call itself (a ternary between two messages included), not members of an object argument.
 */
function logMessages (source: string): string[] {
  const messages: string[] = []
  for (const call of source.matchAll(/\blog\.(?:fatal|error|warn|info|debug|trace)\(/g)) {
    let depth = 1
    let braces = 0
    for (let i = (call.index as number) + call[0].length; i < source.length && depth > 0; i++) {
      const char = source[i] as string
      if (char === '\'') {
        let end = i + 1
        while (source[end] !== '\'') end += source[end] === '\\' ? 2 : 1
        if (depth === 1 && braces === 0) messages.push(source.slice(i + 1, end))
        i = end
      } else if (char === '(') depth++
      else if (char === ')') depth--
      else if (char === '{') braces++
      else if (char === '}') braces--
    }
  }
  return messages
}

describe('docs agree with the code', () => {
  it('environment-variables.md lists exactly the variables the config reads, with the config\'s defaults', () => {
    const rows = tablesByHeading(read('docs/devops/environment-variables.md')).get('Environment variables') ?? []
    const documented = rows.map((row) => unquote(row[0] as string))
    expect(documented.length).toBe(new Set(documented).size)
    expect(new Set(documented)).toEqual(configVariables())
    const source = read('src/config.ts')

    for (const match of source.matchAll(/integer\(env, '([A-Z_]+)', ([\d_]+),/g)) {
      const row = rows.find((cells) => cells[0] === `\`${match[1] as string}\``)
      expect(row?.[2], `default of ${match[1] as string}`).toBe(`\`${Number((match[2] as string).replace(/_/g, ''))}\``)
    }
    for (const [name, fallback] of [['NODE_ENV', 'development'], ['HOST', '0.0.0.0'], ['LOG_LEVEL', 'info'], ['CORS_ORIGIN', '*'], ['DATA_DIR', './.agentidp']]) {
      expect(source).toContain(`text(env, '${name as string}') ?? '${fallback as string}'`)
      expect(rows.find((cells) => cells[0] === `\`${name as string}\``)?.[2], `default of ${name as string}`).toBe(`\`${fallback as string}\``)
    }
  })

  it('the complete .env example sets every variable and is accepted by the config', async () => {
    const documented = (tablesByHeading(read('docs/devops/environment-variables.md')).get('Environment variables') ?? []).map((row) => unquote(row[0] as string))
    const example = codeBlocks(sections(read('docs/devops/environment-variables.md')).get('A complete `.env`') ?? '')[0] ?? ''
    const env = parseDotenv(example)
    expect(Object.keys(env).sort()).toEqual([...documented].sort())
    // The keys are elided (…) in the example: put a real pair in, as keys:generate prints it.
    const generated = parseDotenv((await runCli(sourceOfScript('keys:generate'), {})).stdout)
    const config = loadConfig({ ...env, JWT_PRIVATE_KEY: generated.JWT_PRIVATE_KEY, JWT_PUBLIC_KEY: generated.JWT_PUBLIC_KEY })
    expect(config.nodeEnv).toBe('production')
    expect(config.issuer).toBe(env.ISSUER)
  })

  it('every table, column, type, index, foreign key and trigger in database.md exists after migrations, and every table is described', async () => {
    const app = await context.build()
    const database = read('docs/devops/database.md')
    const documented = tablesByHeading(database)
    const columns = await ownerSql(app)<Array<{ table_name: string, column_name: string, type: string }>>`
      select table_name, column_name,
             case when data_type = 'ARRAY' then substr(udt_name, 2) || '[]'
                  when data_type = 'timestamp with time zone' then 'timestamptz'
                  else data_type end as type
      from information_schema.columns where table_schema = 'public'`
    const actual = new Map<string, Map<string, string>>()
    for (const row of columns) actual.set(row.table_name, (actual.get(row.table_name) ?? new Map()).set(row.column_name, row.type))
    for (const [table, types] of actual) {
      const rows = documented.get(table)
      expect(rows, `table ${table} is not described in database.md`).toBeDefined()
      expect(new Map(rows?.map((cells) => [unquote(cells[0] as string), cells[1]])), `columns and types of ${table}`).toEqual(types)
    }
    for (const heading of documented.keys()) {
      if (/^[a-z_]+$/.test(heading)) expect(actual.has(heading), `database.md describes ${heading}, which does not exist`).toBe(true)
    }

    const indexes = await ownerSql(app)<Array<{ tablename: string, indexname: string }>>`select tablename, indexname from pg_indexes where schemaname = 'public'`
    const text = sections(database)
    for (const table of actual.keys()) {
      const listed = /^Indexes: ([\s\S]*?)\.(?: |\n|$)/m.exec(text.get(table) ?? '')?.[1] ?? ''
      const names = [...listed.matchAll(/`([a-z_]+) \(/g)].map((match) => match[1])
      expect(new Set(names), `indexes of ${table}`).toEqual(new Set(indexes.filter((row) => row.tablename === table).map((row) => row.indexname)))
    }

    const foreignKeys = await ownerSql(app)<Array<{ table_name: string, column_name: string, target: string }>>`
      select c.conrelid::regclass::text as table_name, a.attname as column_name,
             c.confrelid::regclass::text || ' (' || af.attname || ')' as target
      from pg_constraint c
      join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
      join pg_attribute af on af.attrelid = c.confrelid and af.attnum = c.confkey[1]
      where c.contype = 'f' and c.connamespace = 'public'::regnamespace`
    const documentedKeys = [...documented].flatMap(([table, rows]) => rows.flatMap((cells) => {
      const target = /foreign key → `([^`]+)`/.exec(cells[2] ?? '')?.[1]
      return target === undefined ? [] : [`${table}.${unquote(cells[0] as string)} → ${target}`]
    }))
    expect(new Set(documentedKeys)).toEqual(new Set(foreignKeys.map((key) => `${key.table_name}.${key.column_name} → ${key.target}`)))

    const triggers = await ownerSql(app)<Array<{ tgname: string }>>`select tgname from pg_trigger where not tgisinternal`
    const documentedTriggers = [...database.matchAll(/`((?:audit_events|audit_checkpoints)_no_[a-z_]+|webhook_subscriptions_flag_on_[a-z]+)`/g)].map((match) => match[1])
    expect(new Set(documentedTriggers)).toEqual(new Set(triggers.map((row) => row.tgname)))

    // The refusal database.md quotes: start-up recorded the key material, so there is a row to refuse.
    const refused = await ownerSql(app)`update audit_events set actor = actor`.catch((error: { message: string, code: string }) => error)
    expect(refused).toMatchObject({ code: '42501', message: 'audit_events is append-only: UPDATE is not allowed' })
    expect(database).toContain('`audit_events is append-only: UPDATE is not allowed`')
    expect(database).toContain('SQLSTATE 42501')
  })

  it('npm start, the Containerfile and the benchmarks start the server the same way (src/runtime.ts)', () => {
    const env = Object.entries(SERVER_PROCESS_ENV)
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start
    // exec: the shell npm runs the script in becomes node, so a signal to npm's child reaches the server itself.
    expect(start).toBe(`${env.map(([name, value]) => `${name}=\${${name}:-${value}}`).join(' ')} exec node ${SERVER_NODE_FLAGS.join(' ')} dist/src/server.js`)
    const containerfile = read('Containerfile')
    expect(containerfile).toContain(`ENTRYPOINT ${JSON.stringify(['node', ...SERVER_NODE_FLAGS, 'dist/src/server.js']).replace(/","/g, '", "')}`)
    for (const [name, value] of env) expect(containerfile).toMatch(new RegExp(`^ENV .*\\b${name}=${value}\\b`, 'm'))
    for (const file of ['bench/harness.ts', 'bench/soak.ts']) expect(read(file), file).toMatch(/\[\.\.\.SERVER_NODE_FLAGS, [^\n]*'dist\/src\/server\.js'\]/)
  })

  it('ports in the docs agree with compose.yaml, the Containerfile and the config', () => {
    const compose = read('compose.yaml')
    const published = new Map<string, string>()
    let service = ''
    for (const line of compose.split('\n')) {
      service = /^ {2}([a-z-]+):$/.exec(line)?.[1] ?? service
      const ports = /^ {4}ports: \["(127\.0\.0\.1:)?(\d+):(\d+)"\]$/.exec(line)
      if (ports !== null) {
        expect(ports[2], `${service} publishes its port under the same number`).toBe(ports[3])
        // The data stores answer on the host's loopback only; the app is the one service meant to be reached.
        expect(ports[1] !== undefined, `${service} is published on 127.0.0.1 only`).toBe(service !== 'app')
        published.set(service, ports[2] as string)
      }
    }
    expect(Object.fromEntries(published)).toEqual({ postgres: '5432', redis: '6379', app: '3000' })
    expect(compose).toContain('PORT: "3000"')
    expect(compose).toContain('@postgres:5432/')
    expect(compose).toMatch(/redis:\/\/:\$\{REDIS_PASSWORD:\?[^}]+\}@redis:6379/)

    const containerfile = read('Containerfile')
    expect(containerfile).toContain('EXPOSE 3000')
    expect(containerfile).toMatch(/ENV .*PORT=3000/)
    expect(containerfile).toContain('/health/live')
    expect(read('src/config.ts')).toContain("integer(env, 'PORT', 3000")

    // Every variable compose gives the app is one the config reads.
    const variables = new Set((tablesByHeading(read('docs/devops/environment-variables.md')).get('Environment variables') ?? []).map((row) => unquote(row[0] as string)))
    const anchor = /x-agentidp-environment: &agentidp-environment\n((?: {2}.+\n)+)/.exec(compose)?.[1] ?? ''
    const passed = [...anchor.matchAll(/^ {2}([A-Z_]+):/gm)].map((match) => match[1] as string)
    expect(passed.length).toBeGreaterThan(5)
    for (const name of passed) expect(variables.has(name), `compose passes ${name}, which the config does not read`).toBe(true)

    // The component table of architecture.md: `| component | role | port |`.
    const components = [...read('docs/devops/architecture.md').matchAll(/^\| (AgentIdP|PostgreSQL|Redis)\b.*\| (\d+) \|$/gm)].map((match) => match[2])
    expect(components.sort()).toEqual([...published.values()].sort())
    // And the example resource server's default port, which the getting-started guide uses.
    const example = /process\.env\.PORT \?\? (\d+)/.exec(read('examples/resource-server/server.mjs'))?.[1] as string
    expect(example).toBe('4000')
    const ports = new Set([...published.values(), example])
    for (const file of markdownFiles()) {
      for (const match of read(file).matchAll(/\/\/(?:[^/\s@`"]+@)?[a-z0-9.-]+:(\d+)/g)) {
        expect(ports.has(match[1] as string), `${file}: ${match[0]} uses a port neither compose.yaml nor the example resource server uses`).toBe(true)
      }
    }
    expect(read('docs/devops/architecture.md')).toMatch(/PostgreSQL :5432[\s\S]*Redis :6379/)
  })

  it('every relative link resolves, anchors included, and the indexes link every page of their folder', () => {
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
    for (const folder of ['docs/devops', 'docs/guide']) {
      const index = read(`${folder}/README.md`)
      for (const page of readdirSync(join(projectRoot, folder)).filter((name) => name.endsWith('.md') && name !== 'README.md')) {
        expect(index, `${folder}/README.md links to ${page}`).toContain(`](${page}`)
      }
    }
    const readme = read('README.md')
    expect(readme).toContain('](docs/devops/README.md)')
    expect(readme).toContain('](docs/guide/')
    for (const page of ['architecture', 'environment-variables', 'database', 'local-development', 'security', 'operations']) {
      expect(existsSync(join(projectRoot, `docs/devops/${page}.md`)), `docs/devops/${page}.md`).toBe(true)
    }
  })

  it('every npm script the docs name exists, and output redirected to a file is not polluted by npm\'s header', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
    for (const file of markdownFiles()) {
      const text = read(file)
      for (const match of text.matchAll(/npm run (?:(?:-s|--silent) )?([a-z][a-z:-]*)/g)) {
        expect(scripts[match[1] as string], `${file}: npm run ${match[1] as string}`).toBeDefined()
      }
      for (const line of codeBlocks(text).flatMap((code) => code.split('\n'))) {
        if (/npm run .*\s>>?\s*\S/.test(line)) expect(line, `${file}: npm prints its header to stdout; redirect with npm run --silent`).toMatch(/npm run (?:-s|--silent) /)
      }
    }
    expect(read('README.md')).toContain('npm ci && npm start')
    expect(read('README.md')).toContain('npm test')
  })

  it.each([
    [[], 'RS256'],
    [['--type', 'rsa'], 'RS256'],
    [['--type', 'ec'], 'ES256'],
    [['--type', 'ed25519'], 'EdDSA']
  ])('the documented key generation works: npm run keys:generate -- %j prints a %s pair the config and the key loader accept', async (args, alg) => {
    const security = read('docs/devops/security.md')
    if (args.length > 0) expect(security).toContain(args[1] === 'rsa' ? '`rsa` is the default' : `\`-- --type ${args[1] as string}\``)
    const run = await runCli(sourceOfScript('keys:generate'), {}, args)
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/^JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\\n[^\n]+-----END PRIVATE KEY-----"\nJWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\\n[^\n]+-----END PUBLIC KEY-----"\n$/)
    const config = loadConfig(parseDotenv(run.stdout))
    const keys = await loadSigningKeys({ privateKey: config.jwtPrivateKey as string, publicKey: config.jwtPublicKey as string, previous: [] })
    expect(keys.current.alg).toBe(alg)
    if (alg === 'RS256') expect(keys.current.key.asymmetricKeyDetails?.modulusLength).toBe(2048)
  })

  it('security.md quotes the refusal of an unsupported key as the loader words it', async () => {
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
    const pems = { privateKey: p384.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKey: p384.publicKey.export({ type: 'spki', format: 'pem' }) as string, previous: [] }
    const error = await loadSigningKeys(pems).catch((caught: Error) => caught)
    expect(read('docs/devops/security.md').replace(/\n/g, ' ')).toContain(`\`${(error as Error).message}\``)
  })

  it('npm run keys:generate refuses an unknown --type with one line and a non-zero status', async () => {
    const run = await runCli(sourceOfScript('keys:generate'), {}, ['--type', 'dsa'])
    expect(run.status).not.toBe(0)
    expect(run.stdout).toBe('')
    expect(run.stderr.trim()).toBe('agentidp: keys:generate: --type must be rsa, ec, ed25519 or left out (rsa); got dsa')
  })

  const openssl = spawnSync('openssl', ['version']).status === 0
  it.skipIf(!openssl)(`the openssl commands and the awk one-liner in security.md make keys the server accepts${openssl ? '' : ' (skipped: openssl is not installed)'}`, async () => {
    const security = read('docs/devops/security.md')
    const commands = [...security.matchAll(/^openssl .+$/gm)].map((match) => match[0])
    // One genpkey line per key type, each followed by the one pubout line.
    const generators = commands.filter((command) => command.startsWith('openssl genpkey '))
    const pubout = commands.filter((command) => !command.startsWith('openssl genpkey '))
    expect(pubout).toHaveLength(1)
    const directory = mkdtempSync(join(tmpdir(), 'agentidp-openssl-'))
    try {
      const algorithms: string[] = []
      for (const generate of generators) {
        for (const command of [generate, ...pubout]) expect(spawnSync('sh', ['-c', command], { cwd: directory }).status, command).toBe(0)
        const config = loadConfig({ JWT_PRIVATE_KEY: join(directory, 'jwt-private.pem'), JWT_PUBLIC_KEY: join(directory, 'jwt-public.pem') })
        algorithms.push((await loadSigningKeys({ privateKey: config.jwtPrivateKey as string, publicKey: config.jwtPublicKey as string, previous: [] })).current.alg)
      }
      expect(algorithms).toEqual(['RS256', 'ES256', 'EdDSA'])
      // RSA last, for the forms below: as files (the path form) ...
      for (const command of [generators[0] as string, ...pubout]) spawnSync('sh', ['-c', command], { cwd: directory })
      const fromFiles = loadConfig({ JWT_PRIVATE_KEY: join(directory, 'jwt-private.pem'), JWT_PUBLIC_KEY: join(directory, 'jwt-public.pem') })
      const keys = await loadSigningKeys({ privateKey: fromFiles.jwtPrivateKey as string, publicKey: fromFiles.jwtPublicKey as string, previous: [] })
      expect(keys.current.key.asymmetricKeyDetails?.modulusLength).toBe(2048)
      // ... and turned into the escaped one-line form by the documented awk command.
      const awk = /^awk .+$/m.exec(security)?.[0] as string
      expect(awk).toBeDefined()
      const escape = (file: string): string => spawnSync('sh', ['-c', awk.replace('jwt-private.pem', file)], { cwd: directory, encoding: 'utf8' }).stdout
      const escaped = loadConfig({ JWT_PRIVATE_KEY: escape('jwt-private.pem'), JWT_PUBLIC_KEY: escape('jwt-public.pem') })
      expect(escape('jwt-private.pem')).not.toContain('\n')
      expect(escaped.jwtPrivateKey).toBe(fromFiles.jwtPrivateKey)
    } finally {
      rmSync(directory, { recursive: true, force: true })
    }
  })

  it('the documented migration command runs on an empty database and prints what the docs show', async () => {
    const source = sourceOfScript('db:migrate')
    const documented = ['docs/devops/database.md', 'docs/devops/local-development.md'].map((file) => {
      const block = codeBlocks(read(file)).find((code) => code.trimStart().startsWith('applied migration'))
      expect(block, `${file} shows the output of npm run db:migrate`).toBeDefined()
      return (block as string).split('\n').map((line) => line.trim()).filter(Boolean).join('\n')
    })
    const database = await createEmptyDatabase()
    try {
      const first = await runCli(source, { DATABASE_URL: database.url })
      expect(first.status, first.stderr).toBe(0)
      for (const output of documented) expect(first.stdout.trim()).toBe(output)
      const again = await runCli(source, { DATABASE_URL: database.url })
      expect(again.stdout.trim()).toBe('database is up to date')
      expect(read('docs/devops/database.md')).toContain('`database is up to date`')
      // "How to see what is applied", as database.md writes it.
      const query = /`(select version, name, applied_at from schema_migrations[^`]*);`/.exec(read('docs/devops/database.md'))?.[1]
      expect(query).toBeDefined()
      const applied = await withSql(database, async (sql) => await sql.unsafe(query as string))
      expect(applied.map((row) => `${String(row.version).padStart(4, '0')}_${row.name as string}`)).toEqual(readdirSync(join(projectRoot, 'sql')).map((file) => file.replace(/\.sql$/, '')).sort())
    } finally {
      await database.drop()
    }
  })

  it('the server refuses a database with pending migrations with the message operations.md quotes', async () => {
    const database = await createEmptyDatabase()
    try {
      const server = ServerProcess.start({ NODE_ENV: 'test', DATABASE_URL: database.url, DATA_DIR: context.dataDir, LOG_LEVEL: 'silent' })
      expect(await server.exited).toBe(1)
      const line = server.stderr.trim()
      expect(line).toMatch(/^agentidp: the database has \d+ pending migration\(s\) \(.+\): run npm run db:migrate before starting$/)
      expect(read('docs/devops/operations.md')).toContain('`the database has N pending migration(s) (…): run npm run db:migrate before starting`')
    } finally {
      await database.drop()
    }
  })

  it('operations.md explains every log line the server writes, and quotes only real ones', () => {
    const operations = read('docs/devops/operations.md')
    const sources = sourceFiles().map((file) => read(file))
    const messages = sources.flatMap(logMessages)
    expect(messages).toContain('signing key loaded')
    for (const message of new Set(messages)) expect(operations, `log line "${message}" is not in operations.md`).toContain(`\`${message}\``)

    const all = sources.join('\n')
    const tables = tablesByHeading(operations)
    const quoted = [...(tables.get('What the start-up log says') ?? []), ...(tables.get('Log lines while running') ?? [])]
      .flatMap((cells) => (cells[0] as string).split(' / ').map(unquote))
    expect(quoted.length).toBeGreaterThan(20)
    for (const message of quoted) {
      // Up to the first elision or interpolated value: `applied migration 0001_agents …`, `Server listening at http://…`.
      const fixed = message.split(/…|\d{4}_/)[0]?.trim() as string
      if (fixed === 'Server listening at http://') continue // Fastify's own line
      expect(all, `operations.md quotes "${message}", which the code does not log`).toContain(fixed)
    }
  })

  it('the Redis keys and metrics in the docs are the ones the code uses', () => {
    const keys = (tablesByHeading(read('docs/devops/architecture.md')).get('What Redis holds') ?? []).map((cells) => unquote(cells[0] as string))
    expect(keys.sort()).toEqual([
      'rate:{route}:{key}',
      'rate:authfail:{org}{client_id}:{ip}',
      revokedTokenKey('{jti}'),
      agentChangedKey('{agent_id}'),
      credentialChangedKey('{credential_id}'),
      organizationChangedKey('{org_id}'),
      COMPLETE_MARKER_KEY,
      refillFenceKey('{refill_id}'),
      monthlyUsageKey('{agent_id}', '{YYYY-MM}'),
      dpopProofKey(DEFAULT_ORG_ID, '{jkt}', '{jti_sha256}')
    ].sort())
    expect(read('plugins/infra/rate-limit.ts')).toContain('`rate:${params.route ?? params.routeInfo?.url')
    expect(read('plugins/clients/authentication/index.ts')).toContain('`rate:authfail:${organizationSegment(orgId)}${clientId}:${ip}`')
    const patterns = (tablesByHeading(read('docs/devops/operations.md')).get('Redis key patterns') ?? []).map((cells) => unquote(cells[0] as string))
    expect(patterns).toEqual(['rate:*', 'revoked:*', 'monthly:*', 'dpop:*'])

    const defined = [...read('plugins/infra/metrics.ts').matchAll(/name: '(agentidp_[a-z_]+)'/g)].map((match) => match[1])
    const listed = (tablesByHeading(read('docs/devops/operations.md')).get('Metrics') ?? [])
      .flatMap((cells) => [...(cells[0] as string).matchAll(/`(agentidp_[a-z_]+)(?:\{[^}]*\})?`/g)].map((match) => match[1]))
    expect(new Set(listed)).toEqual(new Set(defined))
  })
})
