import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'
import { freePort } from '../support/redis-server.js'
import { ServerProcess } from '../support/server-process.js'

const context = setupTestContext()
let server: ServerProcess | undefined
afterEach(() => { server?.kill(); server = undefined })

/** The environment of a server on this file's database and Redis, listening on 127.0.0.1:port. */
function serverEnv (port: number): Record<string, string> {
  return {
    NODE_ENV: 'test',
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: context.dataDir,
    DATABASE_URL: context.database.url,
    DATABASE_POOL_SIZE: String(context.database.poolSize),
    ...(context.redisUrl === undefined ? {} : { REDIS_URL: context.redisUrl })
  }
}

async function startServer (env: Record<string, string> = {}): Promise<{ server: ServerProcess, port: number }> {
  const port = await freePort()
  server = ServerProcess.start({ ...serverEnv(port), ...env })
  await server.listening()
  return { server, port }
}

/** Starts a request whose body arrives slowly: it stays in flight until `finish` sends the rest. */
async function slowRequest (port: number): Promise<{ finish: () => void, response: Promise<string> }> {
  const socket = connect(port, '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  const body = '{"name":"slow"}'
  socket.write(`POST /health/live HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body.slice(0, 5)}`)
  let received = ''
  socket.on('data', (chunk) => { received += chunk.toString('utf8') })
  const response = new Promise<string>((resolve) => socket.on('close', () => resolve(received)))
  socket.on('error', () => {})
  return { finish: () => socket.write(body.slice(5)), response }
}

describe('graceful shutdown', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s drains, closes PostgreSQL and Redis, logs it and exits 0', async (signal) => {
    const { server } = await startServer()
    server.child.kill(signal)
    expect(await server.exited).toBe(0)
    const messages = server.logs.map((line) => line.msg)
    expect(messages).toContain('shutting down: draining in-flight requests')
    expect(messages.at(-1)).toBe('shutdown complete')
  })

  it('finishes an in-flight request before exiting', async () => {
    const { server, port } = await startServer()
    const request = await slowRequest(port)
    await sleep(100)
    server.child.kill('SIGTERM')
    await sleep(300)
    expect(server.child.exitCode).toBeNull()
    request.finish()
    expect(await request.response).toMatch(/^HTTP\/1\.1 \d{3} /)
    expect(await server.exited).toBe(0)
  })

  it('exits anyway when the drain outlasts SHUTDOWN_TIMEOUT_MS', async () => {
    const { server, port } = await startServer({ SHUTDOWN_TIMEOUT_MS: '500' })
    await slowRequest(port)
    await sleep(100)
    server.child.kill('SIGTERM')
    expect(await server.exited).toBe(1)
    expect(server.logs.map((line) => line.msg)).toContain('drain took too long: exiting now')
  })

  it('a second signal forces exit at once', async () => {
    const { server, port } = await startServer({ SHUTDOWN_TIMEOUT_MS: '60000' })
    await slowRequest(port)
    await sleep(100)
    server.child.kill('SIGTERM')
    await sleep(200)
    server.child.kill('SIGTERM')
    expect(await server.exited).toBe(1)
    expect(server.logs.map((line) => line.msg)).toContain('second signal: exiting now')
  })

  it('an unhandled promise rejection is logged at fatal with the error, then the process drains and exits 1', async () => {
    // Loaded before the server: one promise rejected where nothing waits for it, when the test says so (SIGUSR2).
    const rejectOnSignal = "process.on('SIGUSR2',()=>{Promise.reject(new Error('nobody-handles-this'))})"
    const { server } = await startServer({ NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(rejectOnSignal)}` })
    server.child.kill('SIGUSR2')
    expect(await server.exited).toBe(1)
    expect(server.logs.find((line) => line.level === 60)).toMatchObject({
      msg: 'unhandled promise rejection: stopping so that the process restarts clean',
      err: { message: 'nobody-handles-this' }
    })
    // The drain says why it started. The order of the lines in stdout is not asserted: pino's fatal() flushes its
    // buffer synchronously while an asynchronous write may still be in flight, and under load (a pipe the reader
    // drains slowly) the lines then arrive out of order. What happened, and the exit, are asserted.
    expect(server.logs.find((line) => line.msg === 'shutting down: draining in-flight requests')).toMatchObject({ reason: 'unhandledRejection' })
    expect(server.logs.map((line) => line.msg)).toContain('shutdown complete')
  })
})

describe('npm start', () => {
  // What a process manager does: signal the process it started, which is npm, not node.
  it.each(['SIGTERM', 'SIGINT'] as const)('%s to npm\'s pid drains the server, which exits, leaving no process behind', async (signal) => {
    server = ServerProcess.command('npm', ['start'], serverEnv(await freePort()))
    await server.listening(60_000)
    const pid = server.logs[0]?.pid as number
    expect(pid).not.toBe(server.child.pid)
    try {
      server.child.kill(signal)
      await server.exited
      const messages = server.logs.map((line) => line.msg)
      const output = `${server.stdout.slice(-2000)}${server.stderr.slice(-2000)}`
      expect(messages, output).toContain('shutting down: draining in-flight requests')
      expect(messages.at(-1), output).toBe('shutdown complete')
      expect(() => process.kill(pid, 0), `server process ${pid} is still running`).toThrow(expect.objectContaining({ code: 'ESRCH' }))
    } finally {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  })
})
