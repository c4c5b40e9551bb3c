import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'
import { withHeartbeat } from '../../src/embedded.js'
import { loggerOptions } from '../../src/logger.js'
import { LogCapture, ownerSql } from '../helper.js'

let app: App | undefined
afterEach(async () => { await app?.close(); app = undefined })

async function startEmbedded (dataDir: string, logs: LogCapture): Promise<App> {
  const config = loadConfig({ NODE_ENV: 'development', LOG_LEVEL: 'info', DATA_DIR: dataDir })
  return await buildApp(config, { logger: { ...loggerOptions(config), stream: logs.stream } })
}

describe('embedded default (no DATABASE_URL, REDIS_URL or JWT keys)', () => {
  it('runs on PGlite and the in-process store, says so, and keeps data and keys across a restart', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'agentidp-embedded-'))
    const firstLogs = new LogCapture()
    app = await startEmbedded(dataDir, firstLogs)
    const ready = await app.inject({ method: 'GET', url: '/health/ready' })
    expect(ready.json().checks).toMatchObject({ postgres: { status: 'up', kind: 'pglite' }, redis: { status: 'up', kind: 'memory' } })
    expect(firstLogs.text).toContain('using the embedded PostgreSQL (PGlite)')
    expect(firstLogs.text).toContain('using the in-process store')
    expect(firstLogs.text).toContain('single instance only')
    expect(firstLogs.text).toContain('generated an RSA-2048 development key pair')
    expect(firstLogs.text).toContain('applied migration 0001_agents')
    // Before the slow step, not after it: the first start creates the database, and says so while it works.
    const messages = firstLogs.lines.map((line) => (JSON.parse(line) as { msg: string }).msg)
    const creating = messages.indexOf('creating the embedded PostgreSQL database in DATA_DIR: the first start takes up to a minute')
    expect(creating).toBeGreaterThanOrEqual(0)
    expect(creating).toBeLessThan(messages.findIndex((message) => message.startsWith('DATABASE_URL not set')))
    expect(statSync(join(dataDir, 'jwt-private.pem')).mode & 0o777).toBe(0o600)
    const kid = app.keys.current.kid
    await ownerSql(app)`insert into agents (id, client_id, name) values ('0190a000-0000-7000-8000-000000000001', 'persisted', 'kept across restarts')`
    await app.close()

    const secondLogs = new LogCapture()
    app = await startEmbedded(dataDir, secondLogs)
    expect(app.keys.current.kid).toBe(kid)
    expect(secondLogs.text).toContain('using the development key pair kept in DATA_DIR')
    expect(secondLogs.text).not.toContain('applied migration')
    expect(secondLogs.text).toContain('"msg":"starting the embedded PostgreSQL"')
    expect(secondLogs.text).not.toContain('creating the embedded PostgreSQL database')
    const [agent] = await ownerSql(app)`select name from agents where client_id = 'persisted'`
    expect(agent?.name).toBe('kept across restarts')
  })
})

describe('withHeartbeat', () => {
  it('says it is still at work every interval until the work settles, then never again', async () => {
    vi.useFakeTimers()
    try {
      let finish: (value: string) => void = () => {}
      const ticks: number[] = []
      const work = withHeartbeat(new Promise<string>((resolve) => { finish = resolve }), (seconds) => ticks.push(seconds), 10_000)
      await vi.advanceTimersByTimeAsync(25_000)
      expect(ticks).toEqual([10, 20])
      finish('done')
      expect(await work).toBe('done')
      await vi.advanceTimersByTimeAsync(60_000)
      expect(ticks).toEqual([10, 20])
    } finally {
      vi.useRealTimers()
    }
  })
})
