import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'
import { ServerProcess } from '../support/server-process.js'

const pair = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' }
})
const escaped = (pem: string): string => pem.trim().replace(/\n/g, '\\n')

function errorOf (env: Record<string, string>): ConfigError {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error('expected a ConfigError')
}

describe('configuration', () => {
  it('has working defaults for a laptop', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({ port: 3000, host: '0.0.0.0', issuer: 'http://localhost:3000', corsOrigin: '*', logLevel: 'info', nodeEnv: 'development', shutdownTimeoutMs: 10_000 })
    expect(config.databaseUrl).toBeUndefined()
    expect(config.redisUrl).toBeUndefined()
    expect(config.dataDir.endsWith('.agentidp')).toBe(true)
  })

  it('derives the default issuer from PORT and keeps ISSUER verbatim without a trailing slash', () => {
    expect(loadConfig({ PORT: '4000' }).issuer).toBe('http://localhost:4000')
    expect(loadConfig({ ISSUER: 'https://idp.example.com/tenant/' }).issuer).toBe('https://idp.example.com/tenant')
  })

  it('reads PEM keys as escaped single lines or as file paths', () => {
    const fromEnv = loadConfig({ JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(pair.publicKey) })
    expect(fromEnv.jwtPrivateKey).toContain('\n')
    const dir = mkdtempSync(join(tmpdir(), 'agentidp-keys-'))
    writeFileSync(join(dir, 'private.pem'), pair.privateKey)
    writeFileSync(join(dir, 'public.pem'), pair.publicKey)
    const fromFile = loadConfig({ JWT_PRIVATE_KEY: join(dir, 'private.pem'), JWT_PUBLIC_KEY: join(dir, 'public.pem') })
    expect(fromFile.jwtPublicKey?.trim()).toBe(pair.publicKey.trim())
  })

  it('keeps /metrics public outside production only, unless told otherwise', () => {
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db', REDIS_URL: 'redis://h', JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(pair.publicKey), ISSUER: 'https://idp.example.com' }
    expect(loadConfig({}).metricsPublic).toBe(true)
    expect(loadConfig({ METRICS_TOKEN: 'scrape-token-123' }).metricsPublic).toBe(false)
    expect(loadConfig(production).metricsPublic).toBe(false)
    expect(loadConfig({ ...production, METRICS_PUBLIC: 'true' }).metricsPublic).toBe(true)
    expect(loadConfig({ METRICS_PUBLIC: 'false' }).metricsPublic).toBe(false)
  })

  it('reads a Sentinel or Cluster instead of REDIS_URL, which then satisfies production too', () => {
    const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db', JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(pair.publicKey), ISSUER: 'https://idp.example.com' }
    expect(loadConfig({ ...production, REDIS_SENTINELS: 's1:26379, [::1]:26380', REDIS_SENTINEL_NAME: 'mymaster' }).redisSentinel)
      .toEqual({ name: 'mymaster', nodes: [{ host: 's1', port: 26379 }, { host: '::1', port: 26380 }] })
    expect(loadConfig({ ...production, REDIS_CLUSTER_NODES: '10.0.0.1:6379,10.0.0.2:6379' }).redisClusterNodes)
      .toEqual([{ host: '10.0.0.1', port: 6379 }, { host: '10.0.0.2', port: 6379 }])
  })

  it('splits CORS_ORIGIN lists', () => {
    expect(loadConfig({ CORS_ORIGIN: 'https://a.example, https://b.example:8443' }).corsOrigin).toEqual(['https://a.example', 'https://b.example:8443'])
  })

  it.each([
    [{ PORT: 'abc' }, 'PORT', 'whole number'],
    [{ PORT: '70000' }, 'PORT', 'between'],
    [{ NODE_ENV: 'staging' }, 'NODE_ENV', 'development, production or test'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL', 'postgres:'],
    [{ DATABASE_URL: 'not a url' }, 'DATABASE_URL', 'not a valid URL'],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL', 'redis:'],
    [{ REDIS_SENTINELS: '10.0.0.1', REDIS_SENTINEL_NAME: 'mymaster' }, 'REDIS_SENTINELS', 'host:port'],
    [{ REDIS_SENTINELS: '10.0.0.1:26379,10.0.0.2:0', REDIS_SENTINEL_NAME: 'mymaster' }, 'REDIS_SENTINELS', '"10.0.0.2:0"'],
    [{ REDIS_SENTINELS: '10.0.0.1:26379' }, 'REDIS_SENTINEL_NAME', 'required'],
    [{ REDIS_SENTINEL_NAME: 'mymaster' }, 'REDIS_SENTINELS', 'required'],
    [{ REDIS_CLUSTER_NODES: 'redis://h:6379' }, 'REDIS_CLUSTER_NODES', 'host:port'],
    [{ REDIS_URL: 'redis://h', REDIS_CLUSTER_NODES: 'h:6379' }, 'REDIS_CLUSTER_NODES', 'REDIS_URL'],
    [{ REDIS_SENTINELS: 'h:26379', REDIS_SENTINEL_NAME: 'mymaster', REDIS_CLUSTER_NODES: 'h:6379' }, 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'],
    [{ ISSUER: 'https://idp.example.com/?x=1' }, 'ISSUER', 'query'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL', 'one of'],
    [{ CORS_ORIGIN: 'example.com' }, 'CORS_ORIGIN', 'origins'],
    [{ JWT_PRIVATE_KEY: '/no/such/file.pem', JWT_PUBLIC_KEY: escaped(pair.publicKey) }, 'JWT_PRIVATE_KEY', 'neither a PEM'],
    [{ JWT_PRIVATE_KEY: escaped(pair.publicKey), JWT_PUBLIC_KEY: escaped(pair.publicKey) }, 'JWT_PRIVATE_KEY', 'private key'],
    [{ JWT_PRIVATE_KEY: escaped(pair.privateKey) }, 'JWT_PUBLIC_KEY', 'required'],
    [{ BOOTSTRAP_CLIENT_ID: 'admin' }, 'BOOTSTRAP_CLIENT_SECRET', 'required'],
    [{ BOOTSTRAP_CLIENT_ID: 'admin', BOOTSTRAP_CLIENT_SECRET: 'short' }, 'BOOTSTRAP_CLIENT_SECRET', 'at least 32'],
    [{ SHUTDOWN_TIMEOUT_MS: '-1' }, 'SHUTDOWN_TIMEOUT_MS', 'whole number'],
    [{ NODE_ENV: 'production' }, 'DATABASE_URL', 'required when NODE_ENV=production'],
    [{ NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db' }, 'REDIS_URL', 'required when NODE_ENV=production'],
    [{ NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db', REDIS_URL: 'redis://h' }, 'JWT_PRIVATE_KEY', 'required when NODE_ENV=production'],
    [{ NODE_ENV: 'production', DATABASE_URL: 'postgres://h/db', REDIS_URL: 'redis://h', JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(pair.publicKey) }, 'ISSUER', 'required when NODE_ENV=production'],
    [{ METRICS_PUBLIC: 'yes' }, 'METRICS_PUBLIC', 'true or false'],
    [{ METRICS_PUBLIC: 'true', METRICS_TOKEN: 'scrape-token-123' }, 'METRICS_PUBLIC', 'METRICS_TOKEN']
  ])('refuses %j naming %s', (env, variable, problem) => {
    const error = errorOf(env as Record<string, string>)
    expect(error.variable).toBe(variable)
    expect(error.message).toContain(variable)
    expect(error.message).toContain(problem)
  })

  it('stops the server process with one clear line and no stack trace', async () => {
    const server = ServerProcess.start({ PORT: 'abc' })
    expect(await server.exited).toBe(1)
    expect(server.stderr.trim()).toBe('agentidp: configuration error: PORT must be a whole number, got "abc"')
    expect(server.stdout).toBe('')
  })

  it('names the missing variable in production', async () => {
    const server = ServerProcess.start({ NODE_ENV: 'production', DATABASE_URL: 'postgres://127.0.0.1/x' })
    expect(await server.exited).toBe(1)
    expect(server.stderr.trim()).toBe('agentidp: configuration error: REDIS_URL is required when NODE_ENV=production')
  })

  it('refuses to start in production without ISSUER, in one line', async () => {
    const server = ServerProcess.start({ NODE_ENV: 'production', DATABASE_URL: 'postgres://127.0.0.1/x', REDIS_URL: 'redis://127.0.0.1', JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(pair.publicKey) })
    expect(await server.exited).toBe(1)
    expect(server.stderr.trim()).toBe('agentidp: configuration error: ISSUER is required when NODE_ENV=production (the public URL clients reach this server at)')
  })

  it('refuses a public key that does not belong to the private key', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } })
    const dataDir = mkdtempSync(join(tmpdir(), 'agentidp-mismatch-'))
    const server = ServerProcess.start({ DATA_DIR: dataDir, PORT: '0', JWT_PRIVATE_KEY: escaped(pair.privateKey), JWT_PUBLIC_KEY: escaped(other.publicKey) })
    expect(await server.exited).toBe(1)
    expect(server.stderr.trim().split('\n').at(-1)).toBe('agentidp: configuration error: JWT_PUBLIC_KEY is not the public half of JWT_PRIVATE_KEY')
  })
})
