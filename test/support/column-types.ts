import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { TestContext } from '../helper.js'
import { bounded, columnRequestArbitrary, databaseFingerprint, ENDPOINTS, expectErrorBody, prepareFuzzContext } from './fuzz.js'
import { createAgent, createCredential } from './management.js'

/**
 * The column-type property, for every endpoint with typed members (EndpointDescriptor.columns): a value the column
 * cannot store exactly is refused with a 4xx (on the management API a 400 whose errors name the member), nothing is
 * ever a 5xx, every error is JSON of the endpoint's kind, a refusal changes nothing, and free text that is accepted
 * reads back exactly as it was sent. Registered by a quick test file and a long one, with their numbers of runs.
 */
export function describeColumnTypes (context: TestContext, runs: number, timeoutMs: number): void {
  describe('values of each member\'s column type (property-based)', () => {
    it.each(ENDPOINTS.filter((endpoint) => endpoint.columns !== undefined).map((endpoint) => [endpoint.name, endpoint] as const))('%s: what its columns cannot store is a 4xx naming the member, never a 5xx', async (_name, endpoint) => {
      // Rate limiting and the failure limiter would answer 429 before the values are looked at.
      const app = await context.build({ RATE_LIMIT_API_PER_MIN: '0', RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0' })
      const ctx = await prepareFuzzContext(app, createAgent, createCredential)

      await fc.assert(fc.asyncProperty(columnRequestArbitrary(endpoint, ctx), async ({ options, location, type, received, unstorable }) => {
        const what = `${options.method} ${options.url} (${location}: ${type} ${JSON.stringify(received)?.slice(0, 200)})`
        const before = await databaseFingerprint(app)
        const response = await bounded(app.inject(options), 5000, what)
        const status = response.statusCode

        expect(status, `${what}: ${response.body}`).toBeLessThan(500)
        if (unstorable) expect(status, `${what} was accepted: ${response.body}`).toBeGreaterThanOrEqual(400)
        if (status >= 400) {
          expectErrorBody(response, endpoint.errorKind, options.method as string)
          expect((await databaseFingerprint(app)).tables, `${what} → ${status} changed the database`).toEqual(before.tables)
          if (unstorable && endpoint.errorKind === 'problem') {
            expect(status, `${what}: ${response.body}`).toBe(400)
            const locations: string[] = (response.json().errors ?? []).map((error: { location: string }) => error.location)
            // A member named __proto__ is refused by the JSON parser (prototype poisoning), before any member is
            // looked at: a 400 that names no member.
            const poisoned = typeof options.payload === 'string' && options.payload.includes('"__proto__"')
            expect(poisoned || locations.some((at) => at === location || at.startsWith(`${location}/`)), `${what}: ${response.body}`).toBe(true)
          }
          return
        }
        // Text and JSON that were accepted are stored as they were sent, not altered on the way. As sent: the value
        // through JSON, which has no -0 (a generated -0 goes over the wire as 0).
        if ((type === 'text' || type === 'jsonb') && location.startsWith('body/') && endpoint.body === 'json' && status < 300) {
          expect(response.json()[location.slice('body/'.length)], what).toEqual(JSON.parse(JSON.stringify(received)))
        }
      }), { numRuns: runs, endOnFailure: true })
    }, timeoutMs)
  })
}
