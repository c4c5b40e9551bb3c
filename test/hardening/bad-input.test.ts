import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'
import { bounded, databaseFingerprint, ENDPOINTS, expectErrorBody, prepareFuzzContext, requestArbitrary } from '../support/fuzz.js'
import { authHeaders, createAgent, createCredential } from '../support/management.js'

const context = setupTestContext()

// Enough to find what the generators can reach, few enough for 2 shared cores; raise locally with FUZZ_RUNS.
const RUNS = Number(process.env.FUZZ_RUNS ?? 200)
// A request that has not answered by then hangs, as far as a client is concerned.
const REQUEST_BOUND_MS = 5000
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

describe('hostile input at every endpoint (property-based)', () => {
  it.each(ENDPOINTS.map((endpoint) => [endpoint.name, endpoint] as const))('%s: never a 5xx or a hang; every error a JSON body of the right kind; nothing written when refused', async (_name, endpoint) => {
    // Rate limiting would turn most requests into 429s and hide what lies behind it; it is tested on its own.
    const app = await context.build({ RATE_LIMIT_API_PER_MIN: '0' })
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const seen = new Set<number>()

    await fc.assert(fc.asyncProperty(requestArbitrary(endpoint, ctx), async ({ options, authorized }) => {
      const what = `${options.method} ${options.url}`
      const before = await databaseFingerprint(app)
      const response = await bounded(app.inject(options), REQUEST_BOUND_MS, what)
      const status = response.statusCode
      seen.add(status)

      expect(status, `${what}: ${response.body}`).toBeLessThan(500)
      expect(response.headers['x-request-id']).toMatch(REQUEST_ID)
      // Only the one valid credential opens a protected route (a CORS preflight answers without touching data).
      if (endpoint.auth === 'bearer' && !authorized && options.method !== 'OPTIONS') expect(status, what).toBeGreaterThanOrEqual(400)
      if (status < 300 && /^application\/([a-z.-]+\+)?json/.test(String(response.headers['content-type'])) && options.method !== 'HEAD') expect(() => response.json()).not.toThrow()
      if (status < 400) return

      expectErrorBody(response, endpoint.errorKind, options.method as string)
      const after = await databaseFingerprint(app)
      expect(after.tables, `${what} → ${status} changed the database`).toEqual(before.tables)
      // The one trace a refused request leaves: auth.failed, exactly once, when it failed Bearer authentication.
      const authFailure = (status === 400 || status === 401) && /^Bearer /.test(String(response.headers['www-authenticate'] ?? ''))
      const expectedEvents = { ...before.events }
      if (authFailure) expectedEvents['auth.failed'] = (expectedEvents['auth.failed'] ?? 0) + 1
      expect(after.events, `${what} → ${status} recorded events`).toEqual(expectedEvents)
    }), { numRuns: RUNS, endOnFailure: true })
    // The generators reach both sides: requests that get through to the handler and requests that are refused.
    expect([...seen].some((status) => status < 300), `statuses seen: ${[...seen].join(', ')}`).toBe(true)
    expect([...seen].some((status) => status >= 400)).toBe(true)
  }, 180_000)
})

describe('what the properties found, pinned', () => {
  it('a limit too large for a number (Ajv coerces it to Infinity) is a 400, not a 500 from SQL', async () => {
    const app = await context.build()
    const headers = await authHeaders(app)
    for (const url of [`/api/v1/agents?limit=${'1'.repeat(400)}`, '/api/v1/agents?limit=1e400', '/api/v1/agents?limit=-1e400', '/api/v1/audit-events?limit=Infinity']) {
      const response = await app.inject({ method: 'GET', url, headers })
      expect(response.statusCode, url).toBe(400)
      expect(response.json().errors[0].location).toBe('querystring/limit')
    }
  })

  it('a URL that is not validly percent-encoded is a 400 problem+json with a request id, like any other', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/api/v1/agents/%%', headers: await authHeaders(app) })
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json()).toMatchObject({ status: 400, detail: 'the URL is not validly percent-encoded' })
    expect(response.headers['x-request-id']).toMatch(REQUEST_ID)
  })

  it('an OPTIONS that is no CORS preflight gets no text/plain error', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'OPTIONS', url: '/api/v1/agents' })
    expect(response.statusCode).toBe(204)
    expect(response.body).toBe('')
  })
})
