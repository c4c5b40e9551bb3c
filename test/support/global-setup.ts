import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    containerDatabaseUrl?: string
    containerRedisUrl?: string
  }
}

/**
 * Where the tests find PostgreSQL and Redis: TEST_DATABASE_URL / TEST_REDIS_URL when set (CI sets them);
 * else containers from testcontainers when a container runtime answers; else nothing here, and each test file
 * falls back to the embedded default (PGlite in memory, the in-process store).
 */
export default async function setup (project: TestProject): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = []
  const needDatabase = process.env.TEST_DATABASE_URL === undefined
  const needRedis = process.env.TEST_REDIS_URL === undefined
  if (needDatabase || needRedis) {
    let runtime = false
    try {
      const { getContainerRuntimeClient } = await import('testcontainers')
      await getContainerRuntimeClient()
      runtime = true
    } catch {
      console.info('[tests] no container runtime answers: using the embedded default (PGlite in memory, in-process store) where TEST_DATABASE_URL / TEST_REDIS_URL are unset')
    }
    if (runtime) {
      if (needDatabase) {
        const { PostgreSqlContainer } = await import('@testcontainers/postgresql')
        const container = await new PostgreSqlContainer('postgres:15-alpine').start()
        stops.push(() => container.stop())
        project.provide('containerDatabaseUrl', container.getConnectionUri())
      }
      if (needRedis) {
        const { RedisContainer } = await import('@testcontainers/redis')
        const container = await new RedisContainer('redis:7-alpine').start()
        stops.push(() => container.stop())
        project.provide('containerRedisUrl', container.getConnectionUrl())
      }
    }
  }
  return async () => { for (const stop of stops) await stop() }
}
