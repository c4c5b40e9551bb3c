import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

/** Runs redis-cli against a port; returns its trimmed output. */
export function redisCli (port: number, ...args: string[]): string {
  const result = spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 30_000 })
  return `${result.stdout ?? ''}${result.stderr ?? ''}`.trim()
}

/** Polls check every 100 ms until it returns true; throws naming what was awaited after timeoutMs. */
export async function waitFor (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/**
 * redis-server processes of a test's own (plain, replica, Sentinel or Cluster nodes) on fixed ports, each with its
 * own working directory (Sentinel and Cluster nodes rewrite their configuration files). stopAll() ends every one.
 */
export class RedisProcesses {
  readonly #processes = new Map<number, ChildProcess>()
  readonly #directory = mkdtempSync(join(tmpdir(), 'agentidp-redis-'))

  /** Starts redis-server on port with extra options; resolves once it answers PING. */
  async server (port: number, args: string[] = []): Promise<void> {
    await this.#spawn(port, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.#directory, ...args])
  }

  /** Starts a Sentinel on port monitoring the primary at primaryPort under name (quorum 1, down after 1 s). */
  async sentinel (port: number, name: string, primaryPort: number): Promise<void> {
    const file = join(this.#directory, `sentinel-${port}.conf`)
    writeFileSync(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${this.#directory}`,
      `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 1`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 10000`,
      ''
    ].join('\n'))
    await this.#spawn(port, [file, '--sentinel'])
  }

  /** Starts a Cluster node on port (its bus on port + 10000). */
  async clusterNode (port: number): Promise<void> {
    await this.server(port, ['--cluster-enabled', 'yes', '--cluster-config-file', join(this.#directory, `nodes-${port}.conf`), '--cluster-node-timeout', '2000'])
  }

  async #spawn (port: number, args: string[]): Promise<void> {
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    this.#processes.set(port, child)
    await waitFor(`redis-server on ${port}`, () => redisCli(port, 'ping') === 'PONG', 10_000)
  }

  /** Kills the process on port (SIGKILL: no shutdown save, no goodbye to replicas). */
  async kill (port: number): Promise<void> {
    const child = this.#processes.get(port)
    this.#processes.delete(port)
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  async stopAll (): Promise<void> {
    await Promise.all([...this.#processes.keys()].map(async (port) => { await this.kill(port) }))
    rmSync(this.#directory, { recursive: true, force: true })
  }
}
