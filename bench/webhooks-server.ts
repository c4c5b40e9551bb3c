/**
 * The server of bench/webhooks.ts, in a process of its own so that its CPU profile (BENCH_CPU_PROF) is the server's
 * alone: builds the app on DATABASE_URL and REDIS_URL, listens on 127.0.0.1, makes the bench's agent and an admin
 * token, and prints them as one JSON line; closes on SIGTERM.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import { mintAccessToken } from '../test/support/tokens.js'

const app = await buildApp(loadConfig({
  NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: process.env.DATABASE_URL, REDIS_URL: process.env.REDIS_URL, DATA_DIR: mkdtempSync(join(tmpdir(), 'agentidp-bench-')),
  RATE_LIMIT_TOKEN_PER_MIN: '10000000', RATE_LIMIT_API_PER_MIN: '0', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '10000000',
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: 'true'
}))
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
const authorization = `Bearer ${await mintAccessToken(app, { scopes: ['agents:write', 'webhooks:write', 'audit:read'], expiresIn: 3600 })}`
const agent = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { authorization }, payload: { name: 'bench', scopes: ['bench:read'] } })
const credential = await app.inject({ method: 'POST', url: `/api/v1/agents/${agent.json().id as string}/credentials`, headers: { authorization }, payload: {} })
const { client_id: clientId, client_secret: secret } = credential.json() as { client_id: string, client_secret: string }
console.log(JSON.stringify({ base, authorization, clientId, secret }))
process.on('SIGTERM', () => { void app.close().then(() => process.exit(0)) })
