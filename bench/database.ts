import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import { migrate } from '../src/migrate.js'

/** BENCH_DATABASE_URL: the server the benchmarks create their own databases in. */
export const BENCH_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

/** A migrated database of a benchmark's own, dropped by `drop()`. */
export interface BenchDatabase {
  url: string
  sql: postgres.Sql
  drop(): Promise<void>
}

export async function createBenchDatabase (prefix: string, connections = 2): Promise<BenchDatabase> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  const admin = postgres(BENCH_DATABASE_URL, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  const url = new URL(BENCH_DATABASE_URL)
  url.pathname = `/${name}`
  const sql = postgres(url.toString(), { max: connections, onnotice: () => {} })
  await migrate(sql, () => {})
  return {
    url: url.toString(),
    sql,
    async drop () {
      await sql.end()
      await admin.unsafe(`drop database if exists ${name} with (force)`)
      await admin.end()
    }
  }
}
