/** Server entry: reads the configuration, builds the app, listens, and drains on SIGTERM/SIGINT. */
import { ConfigError, loadConfig, type Config } from './config.js'
import { buildApp, type App } from './app.js'
import { assertDriverRepaired, DriverNotRepairedError } from './database.js'
import { MigrationError } from './migrate.js'
import { loadDotEnv } from './dotenv.js'

function fail (message: string): never {
  console.error(`agentidp: ${message}`)
  process.exit(1)
}

/**
 * Closes the app on the first SIGTERM/SIGINT (finishing in-flight requests) and exits 0; a second signal or the
 * timeout forces exit 1.
 *
 * An unhandled promise rejection is a bug whose consequences are unknown (a connection or a cache may be left half
 * changed): it is logged at fatal with the error, then the process drains as on SIGTERM and exits 1, so the
 * orchestrator restarts it clean while the other replicas serve. Node's default would exit at once, dropping the
 * requests in flight, with a stack trace outside the JSON log. docs/devops/operations.md says the same.
 */
// How long an exit may wait for the log to reach stdout before it goes anyway.
const LOG_FLUSH_TIMEOUT_MS = 2000

/**
 * Exits once the log lines written so far have reached stdout. pino writes asynchronously, and at process.exit()
 * its last-chance synchronous flush gives up on a pipe that is full (EAGAIN): a busy log collector then never saw
 * "shutdown complete" or the fatal line that explains an exit 1.
 */
function exitAfterLogFlush (app: App, code: number): void {
  const exit = (): never => process.exit(code)
  setTimeout(exit, LOG_FLUSH_TIMEOUT_MS).unref()
  // Fastify's logger type names no flush; the pino logger behind it has one.
  const { flush } = app.log as { flush?: (done: () => void) => void }
  if (typeof flush === 'function') flush.call(app.log, exit)
  else exit()
}

function drainOnSignalsAndRejections (app: App, config: Config): void {
  let closing = false
  let exitCode = 0
  const drain = (context: Record<string, unknown>): void => {
    closing = true
    app.log.info({ ...context, timeoutMs: config.shutdownTimeoutMs }, 'shutting down: draining in-flight requests')
    const force = setTimeout(() => {
      app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'drain took too long: exiting now')
      exitAfterLogFlush(app, 1)
    }, config.shutdownTimeoutMs)
    force.unref()
    app.close().then(() => {
      app.log.info('shutdown complete')
      exitAfterLogFlush(app, exitCode)
    }, (error: unknown) => {
      app.log.error({ err: error }, 'error while shutting down')
      exitAfterLogFlush(app, 1)
    })
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      app.log.warn({ signal }, 'second signal: exiting now')
      exitAfterLogFlush(app, 1)
      return
    }
    drain({ signal })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  process.on('unhandledRejection', (reason: unknown) => {
    app.log.fatal({ err: reason }, 'unhandled promise rejection: stopping so that the process restarts clean')
    exitCode = 1
    if (!closing) drain({ reason: 'unhandledRejection' })
  })
}

async function main (): Promise<void> {
  let config: Config
  try {
    loadDotEnv()
    config = loadConfig()
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`)
    throw error
  }
  try {
    assertDriverRepaired()
  } catch (error) {
    if (error instanceof DriverNotRepairedError) fail(error.message)
    throw error
  }
  let app: App
  try {
    app = await buildApp(config)
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`)
    if (error instanceof MigrationError) fail(error.message)
    const code = (error as { code?: string }).code
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'CONNECT_TIMEOUT' || code === '28P01' || code === '3D000') {
      fail(`cannot connect to PostgreSQL (${code}): ${(error as Error).message}`)
    }
    throw error
  }
  drainOnSignalsAndRejections(app, config)
  await app.listen({ port: config.port, host: config.host })
}

main().catch((error: unknown) => {
  console.error('agentidp: failed to start:', (error as Error).message ?? error)
  process.exit(1)
})
