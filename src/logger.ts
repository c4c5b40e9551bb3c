import type { FastifyLoggerOptions } from 'fastify'
import type { Config } from './config.js'

/** Anything that may hold a secret, a token or a key, wherever it appears in a log object. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  '*.client_secret',
  '*.clientSecret',
  '*.secret',
  '*.secret_hash',
  '*.password',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.privateKey',
  '*.private_key',
  '*.authorization'
]

const SENSITIVE_QUERY = /([?&](?:client_secret|secret|token|access_token|password|assertion)=)[^&#]*/gi

/** The request line as logged: sensitive query values (sent by mistake) are masked. */
export function safeUrl (url: string): string {
  return url.replace(SENSITIVE_QUERY, '$1[redacted]')
}

/** pino options for Fastify: JSON lines, redaction of every secret-bearing field. */
export function loggerOptions (config: Config): FastifyLoggerOptions & { redact: { paths: string[], censor: string } } {
  return {
    level: config.logLevel,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    serializers: {
      req: (request: { method: string, url: string, ip?: string, headers?: Record<string, unknown> }) => ({
        method: request.method,
        url: safeUrl(request.url),
        remoteAddress: request.ip,
        userAgent: request.headers?.['user-agent']
      })
    }
  }
}
