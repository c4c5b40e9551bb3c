import { spawn, type ChildProcess } from 'node:child_process'
import { ENV_FILE_VARIABLE } from '../../src/dotenv.js'
import { projectRoot } from '../../src/paths.js'

/** A server started as a real process (`node --import tsx src/server.ts`), with its output collected. */
export class ServerProcess {
  stdout = ''
  stderr = ''
  /**
   * The exit code, once the process has exited and its output has been read to the end ('close', not 'exit': a
   * process's last lines can still be in the pipe when it exits, and npm's child writes to the same pipe as npm).
   */
  readonly exited: Promise<number | null>

  private constructor (readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => { this.stdout += chunk.toString('utf8') })
    child.stderr?.on('data', (chunk: Buffer) => { this.stderr += chunk.toString('utf8') })
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)))
  }

  static start (env: Record<string, string | undefined>, entry = 'src/server.ts', args: string[] = []): ServerProcess {
    return ServerProcess.command(process.execPath, ['--import', 'tsx', entry, ...args], env)
  }

  /**
   * Any command, in the project folder unless cwd says otherwise, with only PATH, HOME and env. A developer's .env there is not read
   * (AGENTIDP_ENV_FILE empty) unless env names a file: a test sees exactly the environment it gives.
   */
  static command (file: string, args: string[], env: Record<string, string | undefined>, cwd = projectRoot): ServerProcess {
    const child = spawn(file, args, {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, [ENV_FILE_VARIABLE]: '', ...env } as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    return new ServerProcess(child)
  }

  /** Resolves once the log says the server listens; rejects if it exits first or takes longer than timeoutMs. */
  async listening (timeoutMs = 20_000): Promise<void> {
    const started = Date.now()
    while (!this.stdout.includes('Server listening')) {
      if (this.child.exitCode !== null) throw new Error(`server exited with ${this.child.exitCode}: ${this.stderr}${this.stdout}`)
      if (Date.now() - started > timeoutMs) throw new Error(`server did not listen within ${timeoutMs} ms: ${this.stderr}${this.stdout}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** Parsed JSON log lines. */
  get logs (): Array<Record<string, unknown>> {
    return this.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
  }

  kill (): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL')
  }
}
