import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULT_APP_ROLE, type Sql, type TransactionSql } from './database.js'
import { migrationsDirectory } from './paths.js'

/** One numbered plain-SQL file under sql/. */
export interface Migration {
  version: number
  name: string
  checksum: string
  sql: string
}

/** A migration problem the operator must fix (changed file, gap in the numbers, pending work). */
export class MigrationError extends Error {
  override name = 'MigrationError'
}

// Any constant works; it only has to be the same for every replica of AgentIdP.
const MIGRATION_LOCK_KEY = 4_815_162_342

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/

/** Reads sql/, in order; refuses duplicates and gaps in the numbering. */
export function readMigrations (directory = migrationsDirectory): Migration[] {
  const migrations = readdirSync(directory)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      const match = FILE_NAME.exec(file)
      if (match === null) throw new MigrationError(`sql/${file}: migration files are named NNNN_name.sql`)
      const sql = readFileSync(join(directory, file), 'utf8')
      return { version: Number(match[1]), name: match[2] as string, checksum: createHash('sha256').update(sql).digest('hex'), sql }
    })
    .sort((a, b) => a.version - b.version)
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new MigrationError(`sql/: expected migration ${String(index + 1).padStart(4, '0')}, found ${String(migration.version).padStart(4, '0')}_${migration.name}.sql (numbers must run 0001, 0002, … with no gap or repeat)`)
    }
  })
  return migrations
}

interface AppliedMigration {
  version: number
  name: string
  checksum: string
}

async function appliedMigrations (sql: Sql): Promise<AppliedMigration[]> {
  const [{ exists }] = await sql<[{ exists: boolean }]>`select to_regclass('schema_migrations') is not null as exists`
  if (!exists) return []
  return await sql<AppliedMigration[]>`select version, name, checksum from schema_migrations order by version`
}

/** Throws when a file that was applied has changed since, or when the database knows migrations this code does not. */
function verifyApplied (applied: AppliedMigration[], available: Migration[]): void {
  for (const row of applied) {
    const file = available.find((migration) => migration.version === row.version)
    if (file === undefined) {
      throw new MigrationError(`database has migration ${row.version} (${row.name}) that sql/ does not: this code is older than the database`)
    }
    if (file.checksum !== row.checksum) {
      throw new MigrationError(`sql/${String(row.version).padStart(4, '0')}_${file.name}.sql changed after it was applied (checksum mismatch); add a new migration instead of editing an applied one`)
    }
  }
}

/** The migrations sql/ holds that the database has not applied. Throws on a changed checksum. */
export async function pendingMigrations (sql: Sql, available = readMigrations()): Promise<Migration[]> {
  const applied = await appliedMigrations(sql)
  verifyApplied(applied, available)
  return available.filter((migration) => !applied.some((row) => row.version === migration.version))
}

/**
 * Applies pending migrations in order, in one transaction that holds an advisory lock, so replicas starting
 * together apply each file exactly once and a failure leaves the schema as it was. Returns what it applied.
 */
/**
 * Creates the role the server's connections run as (DATABASE_APP_ROLE) when it does not exist, NOLOGIN and
 * NOBYPASSRLS, owning nothing, and grants it rows only: it reads and writes what row-level security lets it, never
 * the schema. The migrating user is made a member, so a server connecting as that user may SET ROLE to it. Roles
 * belong to the cluster: databases of one cluster share it, and concurrent first migrations may race to create it.
 */
async function grantAppRole (tx: TransactionSql, appRole: string): Promise<void> {
  const role = tx(appRole)
  // DO cannot take parameters: the name goes in as a quoted identifier (config allows [a-z_][a-z0-9_]* only).
  await tx.unsafe(`do $$ begin
    create role "${appRole.replaceAll('"', '""')}" nologin nobypassrls;
  exception when duplicate_object or unique_violation then null;
  end $$`)
  const [{ bypasses }] = await tx<[{ bypasses: boolean }]>`select rolbypassrls or rolsuper as bypasses from pg_roles where rolname = ${appRole}`
  if (bypasses) throw new MigrationError(`role ${appRole} (DATABASE_APP_ROLE) is a superuser or has BYPASSRLS: organizations would not be isolated; give the server a role without either`)
  await tx`grant usage on schema public to ${role}`
  await tx`grant select, insert, update, delete on all tables in schema public to ${role}`
  await tx`revoke insert, update, delete on schema_migrations from ${role}`
  await tx`grant usage, select on all sequences in schema public to ${role}`
  const [{ member }] = await tx<[{ member: boolean }]>`select pg_has_role(current_user, ${appRole}, 'usage') as member`
  if (!member) await tx`grant ${role} to current_user`
}

export async function migrate (sql: Sql, log: (line: string) => void, available = readMigrations(), appRole = DEFAULT_APP_ROLE): Promise<Migration[]> {
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`
    await tx`create table if not exists schema_migrations (
      version integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`
    const pending = await pendingMigrations(tx as unknown as Sql, available)
    for (const migration of pending) {
      try {
        await tx.unsafe(migration.sql)
      } catch (error) {
        throw new MigrationError(`migration ${String(migration.version).padStart(4, '0')}_${migration.name} failed: ${(error as Error).message}`)
      }
      await tx`insert into schema_migrations (version, name, checksum) values (${migration.version}, ${migration.name}, ${migration.checksum})`
      log(`applied migration ${String(migration.version).padStart(4, '0')}_${migration.name}`)
    }
    await grantAppRole(tx, appRole)
    return pending
  })
}
