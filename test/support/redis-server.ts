import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** Whether a redis-server binary is on this machine (fault tests skip visibly without one). */
export const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0

/** A free TCP port on 127.0.0.1. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

/**
 * A redis-server of the test's own, on its own port, that the test may stop and start again. `args` are extra
 * redis-server options (`--maxmemory-policy volatile-lru`), used at every start: change them between a stop and a start.
 */
export class OwnRedisServer {
  #process: ChildProcess | undefined
  private constructor (readonly port: number, public args: string[]) {}

  static async start (args: string[] = []): Promise<OwnRedisServer> {
    const server = new OwnRedisServer(await freePort(), args)
    await server.start()
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start (): Promise<void> {
    this.#process = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.args], { stdio: 'ignore' })
    for (let attempt = 0; attempt < 100; attempt++) {
      const ping = spawnSync('redis-cli', ['-p', String(this.port), 'ping'], { encoding: 'utf8' })
      if (ping.stdout?.trim() === 'PONG') return
      await sleep(50)
    }
    throw new Error(`redis-server on port ${this.port} did not start`)
  }

  async stop (): Promise<void> {
    const child = this.#process
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    this.#process = undefined
  }
}
