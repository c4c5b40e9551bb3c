import postgres from 'postgres'

export type Sql = postgres.Sql

/**
 * The repairs patches/postgres+3.4.9.patch makes to the driver (each hunk names its upstream issue): a write after
 * the socket closed, reconnects after a close during startup, the pool's queue behind a failed attempt, and the
 * array-type query's rejection. The patch publishes this list on the driver under DRIVER_REPAIRS_KEY.
 */
export const DRIVER_REPAIRS = ['next-write', 'startup-close', 'pool-queue', 'array-types'] as const
const DRIVER_REPAIRS_KEY = Symbol.for('agentidp.postgres.repairs')

/** The driver in node_modules is not the repaired one: installed without scripts, or by a tool that skips them. */
export class DriverNotRepairedError extends Error {
  constructor (missing: string[]) {
    super(`the postgres driver lacks the repairs of patches/postgres+3.4.9.patch (${missing.join(', ')}): reinstall with \`npm ci\` (not --ignore-scripts), whose postinstall applies them`)
    this.name = 'DriverNotRepairedError'
  }
}

/**
 * Throws DriverNotRepairedError unless the driver carries every repair: without them a PostgreSQL that drops
 * connections can crash the process or hang requests, and nothing else would say so. `driver` is for tests.
 */
export function assertDriverRepaired (driver: object = postgres): void {
  const present = (driver as Record<symbol, unknown>)[DRIVER_REPAIRS_KEY]
  const missing = DRIVER_REPAIRS.filter((repair) => !Array.isArray(present) || !present.includes(repair))
  if (missing.length > 0) throw new DriverNotRepairedError(missing)
}

/**
 * The one way this codebase opens PostgreSQL: the `postgres` driver, against a server or the embedded PGlite.
 * Refuses a driver without its repairs (assertDriverRepaired).
 */
export function createSql (url: string, poolSize: number, options: { appRole?: string } = {}): Sql {
  assertDriverRepaired()
  const sql = postgres(url, {
    max: poolSize,
    // A PostgreSQL that does not answer must fail requests quickly, not hold them.
    connect_timeout: 5,
    // The driver waits before reconnecting, 3^retries/100 s up to 20 s by default: while PostgreSQL is away, each
    // request would wait that long before even trying, a hang for its client. Retry soon instead, never past 0.5 s;
    // only a request that needs a connection triggers an attempt, so this cannot flood a recovering server.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 0.5),
    idle_timeout: 60,
    onnotice: () => {},
    // The role as a start-up parameter is the SET ROLE of every connection before its first query: the server's
    // sessions run as DATABASE_APP_ROLE, which row-level security binds, even when DATABASE_URL names the owner.
    connection: { application_name: 'agentidp', ...(options.appRole === undefined ? {} : { role: options.appRole }) }
  })
  if (options.appRole !== undefined) Object.defineProperty(sql, APP_ROLE, { value: options.appRole })
  return sql
}

// The app role a client was opened with, read by inOrganization (PGlite ignores start-up parameters).
const APP_ROLE = Symbol('agentidp.appRole')

/** The role the server's connections run as when DATABASE_APP_ROLE is not set (created by src/migrate.ts). */
export const DEFAULT_APP_ROLE = 'agentidp_app'

/** What a repository function queries through: the client itself or the `sql` of a transaction it is threaded into. */
export type Queryable = postgres.ISql

/** A transaction's `sql`, as `sql.begin` hands it over. */
export type TransactionSql = postgres.TransactionSql

/** The default organization (sql/0011): its issuer is ISSUER, and it owns everything created before organizations. */
export const DEFAULT_ORG_ID = '00000000-0000-4000-8000-000000000000'

/**
 * Runs `work` in a transaction that works for one organization: row-level security shows it that organization's
 * rows only, and org_id defaults to it. Every query on an organization-owned table goes through here (reads too):
 * outside it, those tables show no row at all.
 */
export async function inOrganization<T> (sql: Sql, orgId: string, work: (tx: TransactionSql) => Promise<T>): Promise<T> {
  const appRole = (sql as unknown as Record<symbol, string | undefined>)[APP_ROLE]
  return await sql.begin(async (tx) => {
    // The role again, for this transaction: on PGlite, which ignores the start-up parameter, this is what binds it.
    if (appRole === undefined) await tx`select set_config('agentidp.org_id', ${orgId}, true)`
    else await tx`select set_config('agentidp.org_id', ${orgId}, true), set_config('role', ${appRole}, true)`
    return await work(tx)
  }) as T
}

/** Switches an open transaction to another organization (the audit group commit appends for several in one). */
export async function switchOrganization (tx: TransactionSql, orgId: string): Promise<void> {
  await tx`select set_config('agentidp.org_id', ${orgId}, true)`
}
