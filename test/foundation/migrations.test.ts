import { cpSync, mkdtempSync, writeFileSync, appendFileSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { createSql } from '../../src/database.js'
import { migrate, MigrationError, pendingMigrations, readMigrations } from '../../src/migrate.js'
import { migrationsDirectory } from '../../src/paths.js'
import { createEmptyDatabase, withSql, type TestDatabase } from '../helper.js'

let database: TestDatabase | undefined
afterEach(async () => { await database?.drop(); database = undefined })

function copyOfMigrations (): string {
  const directory = mkdtempSync(join(tmpdir(), 'agentidp-sql-'))
  cpSync(migrationsDirectory, directory, { recursive: true })
  return directory
}

describe('migrations', () => {
  it('applies every file in order, recording version, name and checksum, one line each', async () => {
    database = await createEmptyDatabase()
    const lines: string[] = []
    const files = readMigrations()
    await withSql(database, async (sql) => {
      const applied = await migrate(sql, (line) => lines.push(line))
      expect(applied.map((m) => m.version)).toEqual(files.map((m) => m.version))
      expect(lines).toEqual(files.map((m) => `applied migration ${String(m.version).padStart(4, '0')}_${m.name}`))
      const rows = await sql`select version, name, checksum, applied_at from schema_migrations order by version`
      expect(rows.map((r) => [r.version, r.name, r.checksum])).toEqual(files.map((m) => [m.version, m.name, m.checksum]))
      const tables = await sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`
      expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(['agents', 'credentials', 'audit_events', 'token_revocations', 'schema_migrations']))
    })
  })

  it('re-running is a no-op', async () => {
    database = await createEmptyDatabase()
    await withSql(database, async (sql) => {
      await migrate(sql, () => {})
      const lines: string[] = []
      expect(await migrate(sql, (line) => lines.push(line))).toEqual([])
      expect(lines).toEqual([])
      expect(await pendingMigrations(sql)).toEqual([])
    })
  })

  it('refuses to run when an applied file changed', async () => {
    database = await createEmptyDatabase()
    const directory = copyOfMigrations()
    await withSql(database, async (sql) => {
      await migrate(sql, () => {}, readMigrations(directory))
      appendFileSync(join(directory, '0001_agents.sql'), '\n-- edited after it was applied\n')
      await expect(migrate(sql, () => {}, readMigrations(directory))).rejects.toThrow(/0001_agents\.sql changed after it was applied/)
    })
  })

  it('refuses a gap in the numbering and badly named files', () => {
    const gap = copyOfMigrations()
    renameSync(join(gap, '0002_credentials.sql'), join(gap, '0009_credentials.sql'))
    expect(() => readMigrations(gap)).toThrow(MigrationError)
    const named = copyOfMigrations()
    writeFileSync(join(named, 'add-stuff.sql'), 'select 1;')
    expect(() => readMigrations(named)).toThrow(/NNNN_name\.sql/)
  })

  it('rolls back a failing migration and names it', async () => {
    database = await createEmptyDatabase()
    const directory = copyOfMigrations()
    const next = String(readMigrations(directory).length + 1).padStart(4, '0')
    writeFileSync(join(directory, `${next}_broken.sql`), 'create table broken_one (id int);\nselect * from no_such_table;')
    await withSql(database, async (sql) => {
      await expect(migrate(sql, () => {}, readMigrations(directory))).rejects.toThrow(new RegExp(`migration ${next}_broken failed: .*no_such_table`))
      const [{ exists }] = await sql<[{ exists: boolean }]>`select to_regclass('broken_one') is not null as exists`
      expect(exists).toBe(false)
    })
  })

  it('0019 flags the organizations that already have an enabled webhook subscription', async () => {
    database = await createEmptyDatabase()
    const all = readMigrations()
    const [enabled, disabledOnly, none] = ['01900000-0000-7000-8000-00000000000a', '01900000-0000-7000-8000-00000000000b', '01900000-0000-7000-8000-00000000000c']
    await withSql(database, async (sql) => {
      await migrate(sql, () => {}, all.filter((migration) => migration.version < 19))
      await sql`insert into organizations (id, slug, name) values (${enabled}, 'has-enabled', 'A'), (${disabledOnly}, 'has-disabled', 'B'), (${none}, 'has-none', 'C')`
      const subscriptions: Array<[org: string, id: string, enabled: boolean]> = [
        [enabled, '01900000-0000-7000-8000-0000000000a1', false], [enabled, '01900000-0000-7000-8000-0000000000a2', true],
        [disabledOnly, '01900000-0000-7000-8000-0000000000b1', false]
      ]
      for (const [org, id, on] of subscriptions) {
        await sql.begin(async (tx) => {
          await tx`select set_config('agentidp.org_id', ${org}, true)`
          await tx`insert into webhook_subscriptions (id, url, events, enabled, secret_sealed, after_seq) values (${id}, 'https://hooks.example/', '{*}', ${on}, 'v1.sealed', 0)`
        })
      }
      await migrate(sql, () => {}, all)
      const rows = await sql<Array<{ id: string, has_enabled_webhooks: boolean }>>`select id, has_enabled_webhooks from organizations order by id`
      expect(Object.fromEntries(rows.map((row) => [row.id, row.has_enabled_webhooks]))).toEqual({
        '00000000-0000-4000-8000-000000000000': false, [enabled]: true, [disabledOnly]: false, [none]: false
      })
    })
  })

  it('two runners at once apply each migration exactly once', async (context) => {
    database = await createEmptyDatabase()
    // PGlite has one session: two runners cannot hold transactions at once there.
    if (database.kind === 'pglite') context.skip('needs a PostgreSQL server (PGlite has a single session)')
    const first = createSql(database.url, 2)
    const second = createSql(database.url, 2)
    try {
      const [a, b] = await Promise.all([migrate(first, () => {}), migrate(second, () => {})])
      expect(a.length + b.length).toBe(readMigrations().length)
      expect(Math.min(a.length, b.length)).toBe(0)
      const [{ count }] = await first<[{ count: number }]>`select count(*)::int as count from schema_migrations`
      expect(count).toBe(readMigrations().length)
    } finally {
      await first.end()
      await second.end()
    }
  })

  it('the server refuses to serve a database with pending migrations and says what to run', async () => {
    database = await createEmptyDatabase()
    const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: database.url, DATABASE_POOL_SIZE: '1', DATA_DIR: mkdtempSync(join(tmpdir(), 'agentidp-')) })
    await expect(buildApp(config)).rejects.toThrow(/pending migration\(s\).*run npm run db:migrate/)
  })
})

describe('npm run db:migrate', () => {
  it('applies pending migrations, one line each, then reports the database up to date', async () => {
    database = await createEmptyDatabase()
    const { ServerProcess } = await import('../support/server-process.js')
    const first = ServerProcess.start({ DATABASE_URL: database.url }, 'src/migrate-cli.ts')
    expect(await first.exited).toBe(0)
    const expected = readMigrations().map((m) => `applied migration ${String(m.version).padStart(4, '0')}_${m.name}`)
    expect(first.stdout.trim().split('\n')).toEqual([...expected, `${expected.length} migration(s) applied`])
    const second = ServerProcess.start({ DATABASE_URL: database.url }, 'src/migrate-cli.ts')
    expect(await second.exited).toBe(0)
    expect(second.stdout.trim()).toBe('database is up to date')
  })

  it('says which connection failed, without a stack trace', async () => {
    const run = (await import('../support/server-process.js')).ServerProcess.start({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing' }, 'src/migrate-cli.ts')
    expect(await run.exited).toBe(1)
    expect(run.stderr.trim().split('\n')).toHaveLength(1)
    expect(run.stderr).toMatch(/^db:migrate: /)
  })
})
