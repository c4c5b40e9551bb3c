/** Server entry: reads the configuration, builds the app, listens, and drains on SIGTERM/SIGINT. */
import { ConfigError, loadConfig, type Config } from './config.js'
import { buildApp, type App } from './app.js'
import { MigrationError } from './migrate.js'
import { loadDotEnv } from './dotenv.js'

function fail (message: string): never {
  console.error(`agentidp: ${message}`)
  process.exit(1)
}

/** Closes the app on the first SIGTERM/SIGINT (finishing in-flight requests); a second signal or the timeout forces exit. */
function drainOnSignals (app: App, config: Config): void {
  let closing = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      app.log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    closing = true
    app.log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutting down: draining in-flight requests')
    const force = setTimeout(() => {
      app.log.error({ timeoutMs: config.shutdownTimeoutMs }, 'drain took too long: exiting now')
      process.exit(1)
    }, config.shutdownTimeoutMs)
    force.unref()
    app.close().then(() => {
      app.log.info('shutdown complete')
      process.exit(0)
    }, (error: unknown) => {
      app.log.error({ err: error }, 'error while shutting down')
      process.exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
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
  drainOnSignals(app, config)
  await app.listen({ port: config.port, host: config.host })
}

main().catch((error: unknown) => {
  console.error('agentidp: failed to start:', (error as Error).message ?? error)
  process.exit(1)
})
