import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join, resolve } from 'node:path'
import { DEFAULT_APP_ROLE } from './database.js'

/** Everything AgentIdP reads from its environment, validated once at start-up. */
export interface Config {
  nodeEnv: 'development' | 'production' | 'test'
  port: number
  host: string
  /** Public base URL; the `iss` of every token and the discovery `issuer`, verbatim. */
  issuer: string
  logLevel: string
  /** Where the embedded defaults keep their data (PGlite files, generated keys). */
  dataDir: string
  /** `'*'` or the exact origins allowed. */
  corsOrigin: '*' | string[]
  /** Absent: the embedded PostgreSQL (PGlite) in dataDir. */
  databaseUrl?: string
  /** How many connections the postgres driver may open. */
  databasePoolSize: number
  /** The role the server's connections run as (DATABASE_APP_ROLE): no table owned, no BYPASSRLS. */
  databaseAppRole: string
  /** One Redis (or a proxy). With redisSentinel and redisClusterNodes absent too: an in-process store (single instance only). */
  redisUrl?: string
  /** A Sentinel-managed primary: the Sentinels to ask and the name they monitor it under. */
  redisSentinel?: { name: string, nodes: RedisNodeAddress[] }
  /** Seed nodes of a Redis Cluster (the client discovers the rest). */
  redisClusterNodes?: RedisNodeAddress[]
  /** Redis's maxmemory-policy as the operator asserts it, believed only where CONFIG GET is refused. */
  redisMaxmemoryPolicy?: string
  /** PEM. Absent outside production: a generated pair kept in dataDir. */
  jwtPrivateKey?: string
  jwtPublicKey?: string
  /** Earlier public keys still published in the JWKS so their live tokens verify. */
  jwtPreviousPublicKeys: string[]
  /**
   * KEY_ENCRYPTION_KEY: 32 bytes that seal secrets kept in the database (organizations' keys, webhook secrets).
   * Absent outside production: a generated key kept in dataDir. Required in production once anything is sealed.
   */
  keyEncryptionKey?: Buffer
  bootstrapClientId?: string
  bootstrapClientSecret?: string
  shutdownTimeoutMs: number
  /**
   * Which peers' X-Forwarded-For to believe for the client address (Fastify's trustProxy): false (none), true
   * (any), a hop count, or the addresses and CIDRs of the proxies.
   */
  trustProxy: boolean | number | string[]
  /** A request not fully received within this long is answered 408 and its connection closed. */
  requestTimeoutMs: number
  /** The request's headers must arrive within this long (at most requestTimeoutMs). */
  headersTimeoutMs: number
  /** An idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: number
  /** When set, GET /metrics accepts `Authorization: Bearer <metricsToken>`, and only that or a metrics:read token. */
  metricsToken?: string
  /** Whether GET /metrics answers anyone; when not, it needs METRICS_TOKEN or an access token with metrics:read. */
  metricsPublic: boolean
  tokenTtlSeconds: number
  /** DELEGATION_MAX_DEPTH: how many actors an exchanged token's act chain may hold (RFC 8693); deeper is refused. */
  delegationMaxDepth: number
  /**
   * DPOP_NONCE: 'required' makes every DPoP proof carry a nonce of this server (RFC 9449 §8, §9); 'optional' checks a
   * nonce only when a proof carries one.
   */
  dpopNonce: 'optional' | 'required'
  /** Default `aud` of access tokens when the request names no `resource`. */
  tokenAudience: string
  /**
   * FEDERATION_ALLOW_PRIVATE_NETWORKS: key sets and discovery documents of federation issuers may be fetched over
   * http and from loopback, private or link-local addresses (tests, private clusters). Off: https to public ones only.
   */
  federationAllowPrivateNetworks: boolean
  rateLimit: {
    tokenPerMinute: number
    apiPerMinute: number
    authFailuresPerMinute: number
  }
  webhooks: WebhookConfig
  compliance: ComplianceConfig
}

/** SOC 2 evidence (docs/devops/compliance.md): access reviews, credential hygiene, audit retention. */
export interface ComplianceConfig {
  /** REVIEW_STALE_DAYS: an agent unused for longer is flagged stale in the access review. */
  reviewStaleDays: number
  /** CREDENTIAL_MAX_AGE_DAYS: a new credential expires within this many days; unset, no cap. */
  credentialMaxAgeDays?: number
  /** CREDENTIAL_EXPIRY_WARNING_DAYS: credential.expiring is recorded this long before a credential expires. */
  credentialExpiryWarningDays: number
  /** REQUIRE_AGENT_OWNER: an agent cannot be created without an owner. */
  requireAgentOwner: boolean
  /** AUDIT_RETENTION_DAYS: events older than this are archived, then pruned, daily; unset, kept for ever. */
  auditRetentionDays?: number
  /** AUDIT_ARCHIVE_DIR: where archived events are written as NDJSON, one directory per organization. */
  auditArchiveDir: string
}

/** How webhooks are delivered (plugins/webhooks). */
export interface WebhookConfig {
  /** WEBHOOK_RETRY_SCHEDULE: the delay before each retry after a failed attempt, in ms; one attempt more than delays. */
  retryScheduleMs: number[]
  /** WEBHOOK_DISABLE_AFTER_DAYS, in ms: a subscription failing for this long without a success is disabled. */
  disableAfterMs: number
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: http and private, loopback and link-local receivers allowed (tests, private networks). */
  allowPrivateNetworks: boolean
  /** WEBHOOK_TIMEOUT_MS: one attempt, from connecting to the last byte of the answer. */
  timeoutMs: number
  /** WEBHOOK_POLL_INTERVAL_MS: how often the worker looks for due retries and other replicas' events. */
  pollIntervalMs: number
}

/** A Redis node (or Sentinel) address. */
export interface RedisNodeAddress {
  host: string
  port: number
}

/** A configuration value that is missing or wrong; its message names the variable and says what is wrong. */
export class ConfigError extends Error {
  constructor (readonly variable: string, problem: string) {
    super(`${variable} ${problem}`)
    this.name = 'ConfigError'
  }
}

type Env = Record<string, string | undefined>

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A comma-separated list of durations (`5s,5m,2h`; units ms, s, m, h, d), in ms. */
function durations (env: Env, name: string, fallback: string): number[] {
  const raw = text(env, name) ?? fallback
  return raw.split(',').map((entry) => {
    const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(entry.trim())
    if (match === null) throw new ConfigError(name, `must be a comma-separated list of durations like 5s,5m,2h (units ms, s, m, h, d), got "${entry.trim()}"`)
    return Number(match[1]) * (DURATION_UNITS_MS[match[2] as string] as number)
  })
}

/** A positive decimal number (days may be a fraction: 0.5 is twelve hours). */
function positiveNumber (env: Env, name: string, fallback: number, max: number): number {
  const raw = text(env, name)
  if (raw === undefined) return fallback
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) <= 0 || Number(raw) > max) throw new ConfigError(name, `must be a number above 0 and at most ${max}, got "${raw}"`)
  return Number(raw)
}

/** The default WEBHOOK_RETRY_SCHEDULE: ten attempts over about three days. */
export const DEFAULT_WEBHOOK_RETRY_SCHEDULE = '5s,5m,30m,2h,5h,10h,14h,20h,24h'

/** Redis's maxmemory-policy values. */
const MAXMEMORY_POLICIES = ['noeviction', 'allkeys-lru', 'allkeys-lfu', 'allkeys-random', 'volatile-lru', 'volatile-lfu', 'volatile-random', 'volatile-ttl']

/** The longest ISSUER and TOKEN_AUDIENCE, as the longest agent resource (RESOURCE_MAX_LENGTH). */
const MAX_TOKEN_URI_LENGTH = 256

function text (env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name)
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`)
  const value = Number(raw)
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`)
  return value
}

function flag (env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)
  if (raw === undefined) return fallback
  if (raw !== 'true' && raw !== 'false') throw new ConfigError(name, `must be true or false, got "${raw}"`)
  return raw === 'true'
}

function url (env: Env, name: string, protocols: string[]): string | undefined {
  const raw = text(env, name)
  if (raw === undefined) return undefined
  let parsed: URL
  try {
    parsed = new URL(raw)
  } catch {
    throw new ConfigError(name, `is not a valid URL (expected ${protocols[0]}//…)`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${parsed.protocol}"`)
  }
  return raw
}

/** A comma-separated list of host:port (IPv6 in brackets: [::1]:26379). */
function hostPorts (env: Env, name: string): RedisNodeAddress[] | undefined {
  const raw = text(env, name)
  if (raw === undefined) return undefined
  return raw.split(',').map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:/[\]]+)):(\d{1,5})$/.exec(entry)
    const port = Number(match?.[3])
    if (match === null || port < 1 || port > 65535) throw new ConfigError(name, `must be a comma-separated list of host:port, got "${entry}"`)
    return { host: match[1] ?? match[2] ?? '', port }
  })
}

// proxy-addr's names for address ranges, which Fastify's trustProxy accepts beside addresses and CIDRs.
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal']

/** TRUST_PROXY: off by default; true, a hop count, or a comma-separated list of addresses, CIDRs or range names. */
function trustProxy (env: Env): Config['trustProxy'] {
  const raw = text(env, 'TRUST_PROXY')
  if (raw === undefined || raw === 'false') return false
  if (raw === 'true') return true
  if (/^\d+$/.test(raw)) return Number(raw)
  const entries = raw.split(',').map((entry) => entry.trim()).filter(Boolean)
  for (const entry of entries) {
    const [address = '', prefix, extra] = entry.split('/')
    const family = isIP(address)
    const validPrefix = prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32))
    if (!PROXY_RANGE_NAMES.includes(entry) && (family === 0 || !validPrefix || extra !== undefined)) {
      throw new ConfigError('TRUST_PROXY', `must be false, true, a hop count, or a comma-separated list of addresses or CIDRs (e.g. 10.0.0.0/8), got "${entry}"`)
    }
  }
  return entries
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g

/**
 * A PEM value is either the PEM itself, with real newlines or `\n` escapes on one line, or a path to a PEM file.
 * Returns the PEM blocks it holds, newlines restored.
 */
export function readPem (name: string, raw: string, expected: 'PRIVATE KEY' | 'PUBLIC KEY'): string[] {
  let pem = raw.replace(/\\n/g, '\n')
  if (!pem.includes('-----BEGIN')) {
    const path = resolve(raw)
    if (!existsSync(path)) throw new ConfigError(name, 'is neither a PEM value nor the path of an existing file')
    pem = readFileSync(path, 'utf8')
  }
  const blocks = pem.match(PEM_BLOCK) ?? []
  if (blocks.length === 0) throw new ConfigError(name, `holds no PEM block (expected -----BEGIN ${expected}-----)`)
  for (const block of blocks) {
    if (!block.includes(expected)) {
      throw new ConfigError(name, `must hold ${expected.toLowerCase()} PEM, found "${block.split('\n')[0]}"`)
    }
  }
  return blocks
}

/** Reads and validates the environment; throws ConfigError naming the first variable that is wrong. */
export function loadConfig (env: Env = process.env): Config {
  const nodeEnvRaw = text(env, 'NODE_ENV') ?? 'development'
  if (!['development', 'production', 'test'].includes(nodeEnvRaw)) {
    throw new ConfigError('NODE_ENV', `must be development, production or test, got "${nodeEnvRaw}"`)
  }
  const nodeEnv = nodeEnvRaw as Config['nodeEnv']
  const production = nodeEnv === 'production'

  const port = integer(env, 'PORT', 3000, 0, 65535)
  const host = text(env, 'HOST') ?? '0.0.0.0'

  // In production the issuer is what every client and resource server checks `iss` against: a guessed
  // http://localhost would issue tokens no one accepts, so it must be said.
  const issuerGiven = url(env, 'ISSUER', ['http:', 'https:'])
  const issuerRaw = issuerGiven ?? `http://localhost:${port}`
  if (new URL(issuerRaw).search !== '' || new URL(issuerRaw).hash !== '') {
    throw new ConfigError('ISSUER', 'must not carry a query or fragment (RFC 8414 §2)')
  }
  const issuer = issuerRaw.replace(/\/+$/, '')
  // iss and aud are in every token: bounded, with scopes and resources, so every token stays verifiable here.
  if (issuer.length > MAX_TOKEN_URI_LENGTH) throw new ConfigError('ISSUER', `must be at most ${MAX_TOKEN_URI_LENGTH} characters`)
  const tokenAudience = text(env, 'TOKEN_AUDIENCE') ?? issuer
  if (tokenAudience.length > MAX_TOKEN_URI_LENGTH) throw new ConfigError('TOKEN_AUDIENCE', `must be at most ${MAX_TOKEN_URI_LENGTH} characters`)

  const logLevel = text(env, 'LOG_LEVEL') ?? 'info'
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of fatal, error, warn, info, debug, trace, silent, got "${logLevel}"`)
  }

  const corsRaw = text(env, 'CORS_ORIGIN') ?? '*'
  let corsOrigin: Config['corsOrigin'] = '*'
  if (corsRaw !== '*') {
    corsOrigin = corsRaw.split(',').map((origin) => origin.trim()).filter(Boolean)
    for (const origin of corsOrigin) {
      if (!/^https?:\/\/[^/\s]+$/.test(origin)) {
        throw new ConfigError('CORS_ORIGIN', `must be * or a comma-separated list of origins like https://app.example.com, got "${origin}"`)
      }
    }
  }

  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:'])
  const databaseAppRole = text(env, 'DATABASE_APP_ROLE') ?? DEFAULT_APP_ROLE
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(databaseAppRole)) throw new ConfigError('DATABASE_APP_ROLE', `must be a lowercase PostgreSQL role name (letters, digits, _; at most 63), got "${databaseAppRole}"`)
  const redisUrl = url(env, 'REDIS_URL', ['redis:', 'rediss:'])
  const redisSentinels = hostPorts(env, 'REDIS_SENTINELS')
  const redisSentinelName = text(env, 'REDIS_SENTINEL_NAME')
  const redisClusterNodes = hostPorts(env, 'REDIS_CLUSTER_NODES')
  const redisTopologies = ([['REDIS_URL', redisUrl], ['REDIS_SENTINELS', redisSentinels], ['REDIS_CLUSTER_NODES', redisClusterNodes]] as const)
    .filter(([, value]) => value !== undefined).map(([name]) => name)
  if (redisTopologies.length > 1) throw new ConfigError(redisTopologies[1] as string, `must not be set together with ${redisTopologies[0] as string} (one Redis: a URL, Sentinels or a Cluster)`)
  if ((redisSentinels === undefined) !== (redisSentinelName === undefined)) {
    throw new ConfigError(redisSentinels === undefined ? 'REDIS_SENTINELS' : 'REDIS_SENTINEL_NAME', 'is required when the other REDIS_SENTINEL variable is set')
  }
  const redisSentinel = redisSentinels === undefined ? undefined : { name: redisSentinelName as string, nodes: redisSentinels }
  const redisMaxmemoryPolicy = text(env, 'REDIS_MAXMEMORY_POLICY')
  if (redisMaxmemoryPolicy !== undefined && !MAXMEMORY_POLICIES.includes(redisMaxmemoryPolicy)) {
    throw new ConfigError('REDIS_MAXMEMORY_POLICY', `must be one of ${MAXMEMORY_POLICIES.join(', ')}, got "${redisMaxmemoryPolicy}"`)
  }

  const privateRaw = text(env, 'JWT_PRIVATE_KEY')
  const publicRaw = text(env, 'JWT_PUBLIC_KEY')
  const jwtPrivateKey = privateRaw === undefined ? undefined : readPem('JWT_PRIVATE_KEY', privateRaw, 'PRIVATE KEY')[0]
  const jwtPublicKey = publicRaw === undefined ? undefined : readPem('JWT_PUBLIC_KEY', publicRaw, 'PUBLIC KEY')[0]
  if ((jwtPrivateKey === undefined) !== (jwtPublicKey === undefined)) {
    throw new ConfigError(jwtPrivateKey === undefined ? 'JWT_PRIVATE_KEY' : 'JWT_PUBLIC_KEY', 'is required when the other JWT key is set')
  }
  const previousRaw = text(env, 'JWT_PREVIOUS_PUBLIC_KEYS')
  const jwtPreviousPublicKeys = previousRaw === undefined ? [] : readPem('JWT_PREVIOUS_PUBLIC_KEYS', previousRaw, 'PUBLIC KEY')

  if (production) {
    // REDIS_URL stands for any of the three: REDIS_SENTINELS or REDIS_CLUSTER_NODES satisfy it.
    const redis = redisTopologies.length > 0 ? 'set' : undefined
    for (const [name, value] of [['DATABASE_URL', databaseUrl], ['REDIS_URL', redis], ['JWT_PRIVATE_KEY', jwtPrivateKey], ['JWT_PUBLIC_KEY', jwtPublicKey]] as const) {
      if (value === undefined) throw new ConfigError(name, 'is required when NODE_ENV=production')
    }
    if (issuerGiven === undefined) throw new ConfigError('ISSUER', 'is required when NODE_ENV=production (the public URL clients reach this server at)')
  }

  const bootstrapClientId = text(env, 'BOOTSTRAP_CLIENT_ID')
  const bootstrapClientSecret = text(env, 'BOOTSTRAP_CLIENT_SECRET')
  if ((bootstrapClientId === undefined) !== (bootstrapClientSecret === undefined)) {
    throw new ConfigError(bootstrapClientId === undefined ? 'BOOTSTRAP_CLIENT_ID' : 'BOOTSTRAP_CLIENT_SECRET', 'is required when the other BOOTSTRAP_ variable is set')
  }
  if (bootstrapClientId !== undefined && bootstrapClientId.length > 255) {
    throw new ConfigError('BOOTSTRAP_CLIENT_ID', 'must be at most 255 characters')
  }
  if (bootstrapClientSecret !== undefined && bootstrapClientSecret.length < 32) {
    throw new ConfigError('BOOTSTRAP_CLIENT_SECRET', 'must be at least 32 characters')
  }

  const requestTimeoutMs = integer(env, 'REQUEST_TIMEOUT_MS', 30_000, 100, 600_000)
  const headersTimeoutMs = integer(env, 'HEADERS_TIMEOUT_MS', Math.min(10_000, requestTimeoutMs), 100, 600_000)
  // Node refuses a headers timeout longer than the request timeout: say so here, naming the variable.
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError('HEADERS_TIMEOUT_MS', `must not exceed REQUEST_TIMEOUT_MS (${requestTimeoutMs}), got ${headersTimeoutMs}`)

  const kekRaw = text(env, 'KEY_ENCRYPTION_KEY')
  const keyEncryptionKey = kekRaw === undefined ? undefined : Buffer.from(kekRaw, 'base64')
  if (kekRaw !== undefined && (keyEncryptionKey?.length !== 32 || keyEncryptionKey.toString('base64') !== kekRaw.trim())) {
    throw new ConfigError('KEY_ENCRYPTION_KEY', 'must be 32 random bytes in base64, as `openssl rand -base64 32` prints them')
  }

  const dpopNonce = text(env, 'DPOP_NONCE') ?? 'optional'
  if (dpopNonce !== 'optional' && dpopNonce !== 'required') throw new ConfigError('DPOP_NONCE', `must be optional or required, got "${dpopNonce}"`)

  const metricsToken = text(env, 'METRICS_TOKEN')
  const metricsPublic = flag(env, 'METRICS_PUBLIC', !production && metricsToken === undefined)
  if (metricsPublic && metricsToken !== undefined) {
    throw new ConfigError('METRICS_PUBLIC', 'must not be true when METRICS_TOKEN is set (a token guards /metrics only if it is not public)')
  }

  return {
    nodeEnv,
    port,
    host,
    issuer,
    logLevel,
    dataDir: resolve(text(env, 'DATA_DIR') ?? './.agentidp'),
    corsOrigin,
    databaseUrl,
    databasePoolSize: integer(env, 'DATABASE_POOL_SIZE', 10, 1, 1000),
    databaseAppRole,
    redisUrl,
    redisSentinel,
    redisClusterNodes,
    redisMaxmemoryPolicy,
    jwtPrivateKey,
    jwtPublicKey,
    jwtPreviousPublicKeys,
    keyEncryptionKey,
    bootstrapClientId,
    bootstrapClientSecret,
    shutdownTimeoutMs: integer(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    trustProxy: trustProxy(env),
    requestTimeoutMs,
    headersTimeoutMs,
    keepAliveTimeoutMs: integer(env, 'KEEP_ALIVE_TIMEOUT_MS', 72_000, 100, 600_000),
    metricsToken,
    metricsPublic,
    tokenTtlSeconds: integer(env, 'TOKEN_TTL_SECONDS', 3600, 60, 86_400),
    delegationMaxDepth: integer(env, 'DELEGATION_MAX_DEPTH', 4, 1, 16),
    tokenAudience,
    dpopNonce,
    federationAllowPrivateNetworks: flag(env, 'FEDERATION_ALLOW_PRIVATE_NETWORKS', false),
    rateLimit: {
      tokenPerMinute: integer(env, 'RATE_LIMIT_TOKEN_PER_MIN', 600, 0, 10_000_000),
      apiPerMinute: integer(env, 'RATE_LIMIT_API_PER_MIN', 1200, 0, 10_000_000),
      authFailuresPerMinute: integer(env, 'RATE_LIMIT_AUTH_FAILURES_PER_MIN', 20, 0, 10_000_000)
    },
    webhooks: {
      retryScheduleMs: durations(env, 'WEBHOOK_RETRY_SCHEDULE', DEFAULT_WEBHOOK_RETRY_SCHEDULE),
      disableAfterMs: positiveNumber(env, 'WEBHOOK_DISABLE_AFTER_DAYS', 5, 365) * 86_400_000,
      allowPrivateNetworks: flag(env, 'WEBHOOK_ALLOW_PRIVATE_NETWORKS', false),
      timeoutMs: integer(env, 'WEBHOOK_TIMEOUT_MS', 15_000, 100, 60_000),
      pollIntervalMs: integer(env, 'WEBHOOK_POLL_INTERVAL_MS', 1000, 10, 60_000)
    },
    compliance: {
      reviewStaleDays: positiveNumber(env, 'REVIEW_STALE_DAYS', 90, 3650),
      credentialMaxAgeDays: text(env, 'CREDENTIAL_MAX_AGE_DAYS') === undefined ? undefined : positiveNumber(env, 'CREDENTIAL_MAX_AGE_DAYS', 0, 3650),
      credentialExpiryWarningDays: positiveNumber(env, 'CREDENTIAL_EXPIRY_WARNING_DAYS', 14, 365),
      requireAgentOwner: flag(env, 'REQUIRE_AGENT_OWNER', false),
      auditRetentionDays: text(env, 'AUDIT_RETENTION_DAYS') === undefined ? undefined : positiveNumber(env, 'AUDIT_RETENTION_DAYS', 0, 36500),
      auditArchiveDir: resolve(text(env, 'AUDIT_ARCHIVE_DIR') ?? join(text(env, 'DATA_DIR') ?? './.agentidp', 'audit-archive'))
    }
  }
}
