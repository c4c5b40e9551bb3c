import { OutboundRefused, type OutboundResponse } from '../../src/outbound.js'

/** How one attempt ended, as the worker acts on it. */
export type AttemptOutcome =
  | { kind: 'success', statusCode: number }
  /** 410 Gone: the receiver asks never to be called again; the subscription is disabled. */
  | { kind: 'gone', statusCode: 410 }
  | { kind: 'failure', statusCode: number | null, error: string, retryAfterMs?: number, metric: 'failure' | 'retry_after' | 'refused' | 'timeout' }

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in ms from `now`; undefined when absent or unreadable.
 * Capped at `maxMs`, so a receiver cannot park a subscription for longer than the schedule would.
 */
export function retryAfterMs (value: string | string[] | undefined, maxMs: number, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value
  if (raw === undefined) return undefined
  const trimmed = raw.trim()
  let ms: number
  if (/^\d{1,10}$/.test(trimmed)) ms = Number(trimmed) * 1000
  else {
    const at = Date.parse(trimmed)
    if (Number.isNaN(at)) return undefined
    ms = Math.max(0, at - now)
  }
  return Math.min(ms, maxMs)
}

/**
 * The outcome of an answer: 2xx is a success; 410 disables; anything else, a redirect included (never followed), is
 * a failure, and 429 and 503 carry their Retry-After.
 */
export function outcomeOfResponse (response: OutboundResponse, maxRetryAfterMs: number): AttemptOutcome {
  const { status } = response
  if (status >= 200 && status < 300) return { kind: 'success', statusCode: status }
  if (status === 410) return { kind: 'gone', statusCode: 410 }
  if (status === 429 || status === 503) {
    const retryAfter = retryAfterMs(response.headers['retry-after'], maxRetryAfterMs)
    if (retryAfter !== undefined) return { kind: 'failure', statusCode: status, error: `HTTP ${status} with Retry-After`, retryAfterMs: retryAfter, metric: 'retry_after' }
  }
  const error = status >= 300 && status < 400 ? `HTTP ${status}: redirects are not followed` : `HTTP ${status}`
  return { kind: 'failure', statusCode: status, error, metric: 'failure' }
}

/** The outcome of a request that got no answer: refused by the outbound rules, timed out, or a network error. */
export function outcomeOfError (error: Error): AttemptOutcome {
  if (error instanceof OutboundRefused) return { kind: 'failure', statusCode: null, error: `refused: ${error.message}`, metric: 'refused' }
  if (/^no answer within/.test(error.message)) return { kind: 'failure', statusCode: null, error: error.message, metric: 'timeout' }
  const code = (error as { code?: string }).code
  return { kind: 'failure', statusCode: null, error: code === undefined ? error.message : `${code}: ${error.message}`, metric: 'failure' }
}

/**
 * The delay before the next attempt after `attempts` failed ones, or undefined when the schedule is spent. The
 * schedule's delay is spread by ±20% (jitter), so receivers that failed together are not retried together; a
 * Retry-After is honoured as the least delay.
 */
export function nextDelayMs (attempts: number, scheduleMs: number[], retryAfter?: number, random = Math.random): number | undefined {
  const scheduled = scheduleMs[attempts - 1]
  if (scheduled === undefined) return undefined
  const jittered = Math.round(scheduled * (0.8 + 0.4 * random()))
  return retryAfter === undefined ? jittered : Math.max(retryAfter, jittered)
}
