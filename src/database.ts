import postgres from 'postgres'

export type Sql = postgres.Sql

/** The one way this codebase opens PostgreSQL: the `postgres` driver, against a server or the embedded PGlite. */
export function createSql (url: string, poolSize: number): Sql {
  return postgres(url, {
    max: poolSize,
    // A PostgreSQL that does not answer must fail requests quickly, not hold them.
    connect_timeout: 5,
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: 'agentidp' }
  })
}

/** What a repository function queries through: the client itself or the `sql` of a transaction it is threaded into. */
export type Queryable = postgres.ISql
