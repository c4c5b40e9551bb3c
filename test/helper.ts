import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import postgres from 'postgres'
import { createClient } from 'redis'
import { afterAll, afterEach, beforeAll, inject } from 'vitest'
import { buildApp, type App } from '../src/app.js'
import { loadConfig, type Config } from '../src/config.js'
import { createSql, type Sql } from '../src/database.js'
import { startEmbeddedPostgres } from '../src/embedded.js'
import { loggerOptions } from '../src/logger.js'
import { migrate } from '../src/migrate.js'

/** A database of this test file's own, migrated, dropped afterwards. */
export interface TestDatabase {
  kind: 'postgresql' | 'pglite'
  url: string
  /** Connections an app may open to it (1 for PGlite, which has a single session). */
  poolSize: number
  drop(): Promise<void>
}

/** The server URL tests run against, or undefined for the embedded default. */
export function testServerDatabaseUrl (): string | undefined {
  return process.env.TEST_DATABASE_URL ?? inject('containerDatabaseUrl')
}

export function testRedisUrl (): string | undefined {
  return process.env.TEST_REDIS_URL ?? inject('containerRedisUrl')
}

/**
 * Creates an empty database (no migrations applied). On PGlite, which has one session, only one client may
 * work at a time: tests query through `app.sql` rather than a client of their own.
 */
export async function createEmptyDatabase (): Promise<TestDatabase> {
  const serverUrl = testServerDatabaseUrl()
  if (serverUrl === undefined) {
    // Two connections so an app can connect while the previous one is still closing; never used at once.
    const embedded = await startEmbeddedPostgres(undefined, 2)
    pgliteUrls.add(embedded.url)
    return { kind: 'pglite', url: embedded.url, poolSize: 1, drop: async () => { await embedded.stop() } }
  }
  const name = `agentidp_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    kind: 'postgresql',
    url: url.toString(),
    poolSize: 10,
    async drop () {
      await admin.unsafe(`drop database if exists ${name} with (force)`)
      await admin.end({ timeout: 1 })
    }
  }
}

/** Runs fn with a short-lived client of the database, closed before it returns. */
export async function withSql<T> (database: TestDatabase, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = createSql(database.url, 1)
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 1 })
  }
}

const ownerClients = new Map<string, Sql>()
// The URLs of the embedded databases this file made: a single session each, shared with the app.
const pgliteUrls = new Set<string>()

/**
 * A client of the app's database as its owner, for a test to look at (or tamper with) rows behind the app's back,
 * whichever organization they belong to: the app's own connections run as DATABASE_APP_ROLE, which row-level
 * security shows nothing outside an organization transaction. On PGlite (one session, which ignores the app role
 * outside those transactions) that is the app's own client.
 */
export function ownerSql (app: App): Sql {
  const url = app.config.databaseUrl
  if (url === undefined || pgliteUrls.has(url)) return app.sql
  let sql = ownerClients.get(url)
  if (sql === undefined) {
    sql = postgres(url, { max: 2, idle_timeout: 1, onnotice: () => {} })
    ownerClients.set(url, sql)
  }
  return sql
}

/** Creates a database of the test file's own with every migration applied. */
export async function createTestDatabase (): Promise<TestDatabase> {
  const database = await createEmptyDatabase()
  await withSql(database, async (sql) => { await migrate(sql, () => {}) })
  return database
}

/**
 * A Redis database of this worker's own, emptied first: each vitest worker (VITEST_POOL_ID) takes the numbered
 * db after the one TEST_REDIS_URL names, so files running in parallel never share keys (and two suites run at
 * once with different base dbs, e.g. /0 and /4, stay apart). Undefined means the in-process store.
 */
export async function createTestRedisUrl (): Promise<string | undefined> {
  const base = testRedisUrl()
  if (base === undefined) return undefined
  const url = new URL(base)
  const baseDb = Number(url.pathname.slice(1) || '0')
  url.pathname = `/${(baseDb + Number(process.env.VITEST_POOL_ID ?? '1')) % 16}`
  const client = createClient({ url: url.toString() })
  await client.connect()
  await client.flushDb()
  await client.close()
  return url.toString()
}

/** Captured log lines of an app, parsed. */
export class LogCapture {
  readonly lines: string[] = []
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      done()
    }
  })

  get text (): string {
    return this.lines.join('\n')
  }
}

export interface TestContext {
  database: TestDatabase
  redisUrl: string | undefined
  dataDir: string
  /** The environment every app of this file starts from. */
  env: Record<string, string>
  /** Configuration for this file's database and Redis, with env on top. */
  config(env?: Record<string, string | undefined>): Config
  /** Skips the running test on PGlite: several apps at once would share its single session. */
  requireServerDatabase(test: { skip: (note?: string) => void }): void
  /** Skips an OUTAGE_POOLS run with DATABASE_POOL_SIZE=1 where the back-end's pool is one connection already (PGlite). */
  skipRepeatedPool(env: Record<string, string>, test: { skip: (note?: string) => void }): void
  /** Builds an app (closed after the test) on this file's database and Redis. */
  build(env?: Record<string, string | undefined>, options?: { logs?: LogCapture }): Promise<App>
}

/**
 * The pools a PostgreSQL outage test runs with (`it.for(OUTAGE_POOLS)('%s: …', async ([, env], test) => …)`, env on
 * top of the app's): the back-end's (10 connections on a server, 1 on PGlite, a single session) and, on a server, ONE
 * connection too, where the driver used to queue queries behind one connect attempt after another for as long as
 * PostgreSQL was away (repaired by patches/postgres+3.4.9.patch).
 */
export const OUTAGE_POOLS: Array<[pool: string, env: Record<string, string>]> = [
  ['the back-end pool', {}],
  ['DATABASE_POOL_SIZE=1', { DATABASE_POOL_SIZE: '1' }]
]

/**
 * Sets up one database, one Redis db and one DATA_DIR for the calling test file; apps built through it are
 * closed after each test, and everything is dropped after the file.
 */
export function setupTestContext (): TestContext {
  const apps: App[] = []
  const context = {
    env: {} as Record<string, string>,
    config (env: Record<string, string | undefined> = {}): Config {
      const merged: Record<string, string | undefined> = {
        NODE_ENV: 'test',
        LOG_LEVEL: 'silent',
        DATA_DIR: context.dataDir,
        DATABASE_URL: context.database.url,
        DATABASE_POOL_SIZE: String(context.database.poolSize),
        REDIS_URL: context.redisUrl,
        ...context.env,
        ...env
      }
      return loadConfig(merged)
    },
    requireServerDatabase (test: { skip: (note?: string) => void }): void {
      if (context.database.kind === 'pglite') test.skip('two replicas need a PostgreSQL server: PGlite has a single session (the embedded default serves one instance)')
    },
    skipRepeatedPool (env: Record<string, string>, test: { skip: (note?: string) => void }): void {
      if (env.DATABASE_POOL_SIZE === '1' && context.database.poolSize === 1) test.skip('the back-end pool is one connection already (PGlite): the run above')
    },
    async build (env: Record<string, string | undefined> = {}, options: { logs?: LogCapture } = {}): Promise<App> {
      const config = context.config(options.logs === undefined ? env : { LOG_LEVEL: 'trace', ...env })
      const app = await buildApp(config, options.logs === undefined ? {} : { logger: { ...loggerOptions(config), stream: options.logs.stream } })
      apps.push(app)
      return app
    }
  } as TestContext

  beforeAll(async () => {
    context.dataDir = mkdtempSync(join(tmpdir(), 'agentidp-test-'))
    context.database = await createTestDatabase()
    context.redisUrl = await createTestRedisUrl()
  })
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })
  afterAll(async () => {
    await context.database?.drop()
    if (context.dataDir !== undefined) rmSync(context.dataDir, { recursive: true, force: true })
  })
  return context
}
