import { existsSync } from 'node:fs'
import { ConfigError } from './config.js'

/** The variable naming the env file read at start; empty means none. */
export const ENV_FILE_VARIABLE = 'AGENTIDP_ENV_FILE'

/**
 * Reads `.env` in the working directory (or the file AGENTIDP_ENV_FILE names; none when it is empty) into
 * process.env, when it exists, before anything reads the configuration. A variable already set always wins:
 * process.loadEnvFile never overrides one, so the environment a process manager or container gives stays in force.
 * Returns the file read, or undefined; throws a ConfigError when it exists but cannot be read. The server, db:migrate, audit:verify and the agentidp CLI call it first.
 */
export function loadDotEnv (env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = env[ENV_FILE_VARIABLE] ?? '.env'
  if (file === '' || !existsSync(file)) return undefined
  try {
    process.loadEnvFile(file)
  } catch (error) {
    throw new ConfigError(file, `cannot be read: ${(error as Error).message}`)
  }
  return file
}
