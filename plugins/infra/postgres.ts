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
  // PGlite has one session: more than one connection would interleave transactions.
  const sql = createSql(config.databaseUrl ?? (embedded as EmbeddedPostgres).url, embedded === undefined ? config.databasePoolSize : 1)
  try {
    if (embedded !== undefined) {
      await migrate(sql, (line) => app.log.info(line))
    } else {
      const pending = await pendingMigrations(sql)
      if (pending.length > 0) {
        const names = pending.map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`).join(', ')
        throw new MigrationError(`the database has ${pending.length} pending migration(s) (${names}): run npm run db:migrate before starting`)
      }
    }
  } catch (error) {
    await sql.end({ timeout: 1 })
    await embedded?.stop()
    throw error
  }
  app.decorate('sql', sql)
  app.addHook('onClose', async () => {
    await sql.end({ timeout: 5 })
    await embedded?.stop()
  })
}, { name: 'postgres', dependencies: ['config'] })
