import postgres from 'postgres'

export type Sql = postgres.Sql

/** The one way this codebase opens PostgreSQL: the `postgres` driver, against a server or the embedded PGlite. */
export function createSql (url: string, poolSize: number): Sql {
  return postgres(url, {
    max: poolSize,
    // A PostgreSQL that does not answer must fail requests quickly, not hold them.
    connect_timeout: 5,
    // The driver waits before reconnecting, 3^retries/100 s up to 20 s by default: while PostgreSQL is away, each
    // request would wait that long before even trying, a hang for its client. Retry soon instead, never past 0.5 s;
    // only a request that needs a connection triggers an attempt, so this cannot flood a recovering server.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.5),
    idle_timeout: 60,
    onnotice: () => {},
    connection: { application_name: 'agentidp' }
  })
}

/** What a repository function queries through: the client itself or the `sql` of a transaction it is threaded into. */
export type Queryable = postgres.ISql
