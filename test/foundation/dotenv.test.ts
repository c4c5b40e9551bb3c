import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { projectRoot } from '../../src/paths.js'
import { createEmptyDatabase, setupTestContext } from '../helper.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
const directory = mkdtempSync(join(tmpdir(), 'agentidp-dotenv-'))
afterAll(() => { rmSync(directory, { recursive: true, force: true }) })
let running: ServerProcess | undefined
afterEach(() => { running?.kill(); running = undefined })

describe('.env', () => {
  it('the server reads it, and a variable already set wins over the file', async () => {
    const port = await freePort()
    const file = join(directory, 'server.env')
    // PORT in the file is one nothing listens on: the environment's PORT must win.
    writeFileSync(file, `ISSUER=http://from-dotenv.example\nPORT=1\nDATABASE_URL="${context.database.url}"\n`)
    running = ServerProcess.start({
      AGENTIDP_ENV_FILE: file,
      NODE_ENV: 'test',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATA_DIR: context.dataDir,
      DATABASE_POOL_SIZE: String(context.database.poolSize),
      ...(context.redisUrl === undefined ? {} : { REDIS_URL: context.redisUrl })
    })
    await running.listening()
    const discovery = await (await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).json() as { issuer: string }
    expect(discovery.issuer).toBe('http://from-dotenv.example')
  })

  it('db:migrate reads .env in the working directory by default', async () => {
    const database = await createEmptyDatabase()
    try {
      const cwd = join(directory, 'project')
      mkdirSync(cwd)
      writeFileSync(join(cwd, '.env'), `DATABASE_URL=${database.url}\n`)
      const run = ServerProcess.command(process.execPath, ['--import', import.meta.resolve('tsx'), join(projectRoot, 'src/migrate-cli.ts')], { AGENTIDP_ENV_FILE: undefined }, cwd)
      expect(await run.exited, run.stderr).toBe(0)
      expect(run.stdout).toContain('applied migration 0001_agents')
    } finally {
      await database.drop()
    }
  })

  it('a .env that cannot be read stops the start with one line naming it', async () => {
    const unreadable = join(directory, 'a-directory.env')
    mkdirSync(unreadable)
    const run = ServerProcess.start({ AGENTIDP_ENV_FILE: unreadable, NODE_ENV: 'test', DATA_DIR: context.dataDir })
    expect(await run.exited).toBe(1)
    expect(run.stderr.trim()).toMatch(new RegExp(`^agentidp: configuration error: ${unreadable} cannot be read: .+$`))
  })
})
