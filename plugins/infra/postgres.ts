import { join } from 'node:path'
import fp from 'fastify-plugin'
import { createSql, type Sql } from '../../src/database.js'
import { startEmbeddedPostgresSaying, type EmbeddedPostgres } from '../../src/embedded.js'
import { migrate, MigrationError, pendingMigrations } from '../../src/migrate.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The PostgreSQL client (postgres.js); repositories take it, or a transaction's `sql`, as their first argument. */
    sql: Sql
  }
}

/**
 * PostgreSQL for everything that follows. With DATABASE_URL: that server, which must be fully migrated
 * (`npm run db:migrate`). Without: the embedded PGlite in DATA_DIR, migrated here at start.
 */
export default fp(async (app) => {
  const { config } = app
  let embedded: EmbeddedPostgres | undefined
  if (config.databaseUrl === undefined) {
    embedded = await startEmbeddedPostgresSaying(join(config.dataDir, 'pgdata'), (message, seconds) => app.log.info({ dataDir: config.dataDir, seconds }, message))
    app.log.warn({ dataDir: config.dataDir }, 'DATABASE_URL not set: using the embedded PostgreSQL (PGlite) in DATA_DIR; it serves a single instance only')
  }
  // PGlite has one session: more than one connection would interleave transactions. It ignores start-up
  // parameters, so there the role binds inside inOrganization only (docs/devops/organizations.md).
  const url = config.databaseUrl ?? (embedded as EmbeddedPostgres).url
  let sql: Sql
  try {
    if (embedded !== undefined) {
      sql = createSql(url, 1, { appRole: config.databaseAppRole })
      await migrate(sql, (line) => app.log.info(line), undefined, config.databaseAppRole)
      app.log.warn({ role: config.databaseAppRole }, 'PGlite ignores the role of a connection: row-level security binds inside organization transactions only')
    } else {
      // Checked as the connecting user: until the migrations ran, the app role may not exist.
      const owner = createSql(url, 1)
      try {
        const pending = await pendingMigrations(owner)
        if (pending.length > 0) {
          const names = pending.map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`).join(', ')
          throw new MigrationError(`the database has ${pending.length} pending migration(s) (${names}): run npm run db:migrate before starting`)
        }
      } finally {
        await owner.end({ timeout: 1 })
      }
      sql = createSql(url, config.databasePoolSize, { appRole: config.databaseAppRole })
    }
  } catch (error) {
    await embedded?.stop()
    throw error
  }
  app.decorate('sql', sql)
  app.addHook('onClose', async () => {
    await sql.end({ timeout: 5 })
    await embedded?.stop()
  })
}, { name: 'postgres', dependencies: ['config'] })
