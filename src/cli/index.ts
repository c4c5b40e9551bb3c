#!/usr/bin/env node
/**
 * `agentidp`: the command line for a running AgentIdP, through its HTTP API (as kcadm is for Keycloak), so the
 * server's authorization and audit apply to every command. Reads .env first, like the server.
 */
import { CliError } from './client.js'
import { loadDotEnv } from '../dotenv.js'
import { runCli } from './main.js'

try {
  loadDotEnv()
  process.exitCode = await runCli(process.argv.slice(2))
} catch (error) {
  console.error(`agentidp: ${(error as Error).message}`)
  process.exitCode = error instanceof CliError ? error.exitCode : 1
}
