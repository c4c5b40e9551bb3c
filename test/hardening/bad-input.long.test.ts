import type { LightMyRequestResponse } from 'fastify'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { monthlyUsageKey } from '../../plugins/tokens/usage-keys.js'
import { setupTestContext } from '../helper.js'
import { bounded, databaseFingerprint, ENDPOINTS, expectErrorBody, prepareFuzzContext, requestArbitrary, wellFormedRequest, type FuzzContext } from '../support/fuzz.js'
import { auditEvents, createAgent, createCredential } from '../support/management.js'
import { claimsOf } from '../support/oauth.js'

// The long property runs (npm run test:long): hostile requests at every endpoint. What they found is pinned, quickly,
// in bad-input.test.ts, which npm test runs.
const context = setupTestContext()

// Enough to find what the generators can reach, few enough for 2 shared cores; raise locally with FUZZ_RUNS.
const RUNS = Number(process.env.FUZZ_RUNS ?? 200)
// A request that has not answered by then hangs, as far as a client is concerned.
const REQUEST_BOUND_MS = 5000
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

describe('hostile input at every endpoint (property-based)', () => {
  it.each(ENDPOINTS.filter((endpoint) => endpoint.auth !== 'client').map((endpoint) => [endpoint.name, endpoint] as const))('%s: never a 5xx or a hang; every error a JSON body of the right kind; nothing written when refused', async (_name, endpoint) => {
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
      expect(after.lastUsed, `${what} → ${status} recorded a credential use`).toEqual(before.lastUsed)
      // The one trace a refused request leaves: auth.failed, exactly once, when it failed Bearer authentication;
      // authz.denied, exactly once, when it was refused for want of authority (403).
      const authFailure = (status === 400 || status === 401) && /^Bearer /.test(String(response.headers['www-authenticate'] ?? ''))
      const expectedEvents = { ...before.events }
      if (authFailure) expectedEvents['auth.failed'] = (expectedEvents['auth.failed'] ?? 0) + 1
      if (status === 403 && endpoint.auth === 'bearer') expectedEvents['authz.denied'] = (expectedEvents['authz.denied'] ?? 0) + 1
      expect(after.events, `${what} → ${status} recorded events`).toEqual(expectedEvents)
    }), { numRuns: RUNS, endOnFailure: true, examples: [[wellFormedRequest(endpoint, ctx)]] })
    // Both sides are reached: requests that get through to the handler (the well-formed one first) and requests that are refused.
    expect([...seen].some((status) => status < 300), `statuses seen: ${[...seen].join(', ')}`).toBe(true)
    expect([...seen].some((status) => status >= 400)).toBe(true)
  }, 180_000)
})

/** What a request may change: the database, and the token counter of the fuzzed client's agent in Redis. */
async function snapshot (app: App, ctx: FuzzContext) {
  return { ...await databaseFingerprint(app), monthly: Number(await app.store.get(monthlyUsageKey(ctx.client.agentId)) ?? 0) }
}

/** Events recorded between two snapshots, by type. */
function newEvents (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([type, count]) => [type, count - (before[type] ?? 0)]).filter(([, added]) => added !== 0))
}

/** The tables whose content changed between two snapshots. */
function changedTables (before: Record<string, string>, after: Record<string, string>): string[] {
  return Object.keys(after).filter((name) => after[name] !== before[name])
}

type Snapshot = Awaited<ReturnType<typeof snapshot>>

/**
 * What a 2xx of each OAuth endpoint may write. Token: exactly one token.issued (the token's jti) and one more in
 * the agent's monthly counter. Revoke (RFC 7009): a live token of the client's own, not yet revoked, gets exactly
 * one token_revocations row and one token.revoked; anything else (unknown, expired, already revoked) nothing.
 * Introspect: nothing.
 */
const SUCCESS_WRITES: Record<string, (app: App, ctx: FuzzContext, response: LightMyRequestResponse, before: Snapshot, after: Snapshot, revoked: Set<string>) => Promise<void>> = {
  '/oauth2/token': async (app, ctx, response, before, after) => {
    expect(response.headers['cache-control']).toBe('no-store')
    const { jti } = claimsOf(response.json().access_token)
    expect(newEvents(before.events, after.events)).toEqual({ 'token.issued': 1 })
    expect(changedTables(before.tables, after.tables)).toEqual([])
    expect(after.monthly).toBe(before.monthly + 1)
    const [issued] = (await auditEvents(app, 'token.issued')).slice(-1)
    expect(issued).toMatchObject({ agent_id: ctx.client.agentId, actor: ctx.client.clientId, data: { jti } })
  },
  '/oauth2/revoke': async (app, ctx, response, before, after, revoked) => {
    expect(response.body).toBe('')
    expect(after.monthly).toBe(before.monthly)
    const added = newEvents(before.events, after.events)
    if (Object.keys(added).length === 0) {
      expect(changedTables(before.tables, after.tables)).toEqual([])
      return
    }
    expect(added).toEqual({ 'token.revoked': 1 })
    expect(changedTables(before.tables, after.tables)).toEqual(['token_revocations'])
    const [event] = (await auditEvents(app, 'token.revoked')).slice(-1)
    expect(event?.data.client_id).toBe(ctx.client.clientId)
    expect(revoked.has(event?.data.jti), 'revoked twice').toBe(false)
    revoked.add(event?.data.jti)
  },
  '/oauth2/introspect': async (_app, ctx, response, before, after) => {
    expect(response.headers['cache-control']).toBe('no-store')
    const introspection = response.json()
    expect(typeof introspection.active).toBe('boolean')
    // The fuzzed client holds no tokens:introspect: it sees only its own tokens.
    if (introspection.active === true) expect(introspection.client_id).toBe(ctx.client.clientId)
    else expect(Object.keys(introspection)).toEqual(['active'])
    expect(newEvents(before.events, after.events)).toEqual({})
    expect(changedTables(before.tables, after.tables)).toEqual([])
    expect(after.monthly).toBe(before.monthly)
  }
}

/** Refusals that come after the client authenticated: its credential's last_used_at may be written for them. */
const AFTER_AUTHENTICATION = /^400 (invalid_scope|invalid_target) |^400 invalid_request the token was not issued to this client(: .*)?$|^400 invalid_request the token would be /

describe('hostile input at the OAuth endpoints (property-based)', () => {
  it.each(ENDPOINTS.filter((endpoint) => endpoint.auth === 'client').map((endpoint) => [endpoint.name, endpoint] as const))('%s: never a 5xx or a hang; errors RFC 6749 JSON; writes only what the outcome allows', async (_name, endpoint) => {
    // The failure limiter stays on, low: most requests come from a fresh address and reach the secret check; one
    // noisy address trips it at once, and its 429s must be RFC 6749 JSON too. The per-client token limit stays at its default.
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '1' })
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const outcomes = new Set<string>()
    const revoked = new Set<string>()
    // last_used_at is written off the response path after a successful authentication, at most once a minute: it
    // may land during a later request, but only after some request authenticated, and only for that credential.
    let touchPending = false

    await fc.assert(fc.asyncProperty(requestArbitrary(endpoint, ctx), async ({ options, authorized, routed }) => {
      const what = `${options.method} ${options.url} from ${options.remoteAddress}`
      const before = await snapshot(app, ctx)
      const response = await bounded(app.inject(options), REQUEST_BOUND_MS, what)
      const status = response.statusCode
      const after = await snapshot(app, ctx)

      expect(status, `${what}: ${response.body}`).toBeLessThan(500)
      expect(response.headers['x-request-id']).toMatch(REQUEST_ID)
      if (!routed) {
        // Another method or path: no OAuth endpoint answered (a 404 problem+json, or a CORS preflight).
        if (status >= 400) expectErrorBody(response, 'problem', options.method as string)
        expect(newEvents(before.events, after.events), what).toEqual({})
        expect(after.tables, what).toEqual(before.tables)
        return
      }
      if (authorized) expect(status, `${what} presented the valid credential: ${response.body}`).not.toBe(401)
      // Only the live credential, by exactly one method, gets an answer (RFC 6749 §2.3).
      if (status < 300) expect(authorized, `${what} → ${status} without the one valid credential`).toBe(true)

      let outcome = String(status)
      if (status >= 400) {
        expectErrorBody(response, 'oauth', options.method as string)
        const { error, error_description: description } = response.json()
        outcome = `${status} ${error}`
        if (status === 401) {
          expect(error).toBe('invalid_client')
          expect(response.headers['www-authenticate']).toMatch(/^Basic /)
          // A failed client authentication is recorded, once, without the secret; nothing else is written.
          expect(newEvents(before.events, after.events), `${what} → 401`).toEqual({ 'auth.failed': 1 })
          const [failure] = (await auditEvents(app, 'auth.failed')).slice(-1)
          expect(failure?.data.endpoint).toBe(endpoint.path.slice('/oauth2/'.length))
          expect(JSON.stringify(failure)).not.toContain(ctx.client.secret.slice(-20))
        } else {
          if (status === 429) {
            expect(error).toBe('slow_down')
            expect(Number(response.headers['retry-after'])).toBeGreaterThan(0)
          }
          // Another client's token, refused for want of authority: one authz.denied (docs/devops/security.md).
          const denied = endpoint.path === '/oauth2/revoke' && String(description).startsWith('the token was not issued to this client')
          expect(newEvents(before.events, after.events), `${what} → ${status} ${error}: ${description}`).toEqual(denied ? { 'authz.denied': 1 } : {})
        }
        expect(after.tables, `${what} → ${status} ${error} changed the database`).toEqual(before.tables)
        expect(after.monthly, `${what} → ${status} counted a token`).toBe(before.monthly)
        if (AFTER_AUTHENTICATION.test(`${outcome} ${description}`)) touchPending = true
      } else if (status < 300) {
        await SUCCESS_WRITES[endpoint.path]?.(app, ctx, response, before, after, revoked)
        if (endpoint.path === '/oauth2/introspect' && response.json().active === true) outcome = '200 active'
        touchPending = true
      }
      outcomes.add(outcome)

      for (const [credentialId, lastUsed] of Object.entries(after.lastUsed)) {
        if (lastUsed === before.lastUsed[credentialId]) continue
        expect(credentialId, `${what} → ${status} recorded the use of another credential`).toBe(ctx.client.credentialId)
        expect(touchPending, `${what} → ${status} recorded a credential use no authentication made`).toBe(true)
        touchPending = false
      }
    }), { numRuns: RUNS, endOnFailure: true })

    // The generators reach every side: success, refusal before and after authentication, the limiter.
    const seen = [...outcomes].join(', ')
    expect([...outcomes].some((outcome) => outcome.startsWith('200')), seen).toBe(true)
    for (const expected of ['401 invalid_client', '400 invalid_request', '429 slow_down']) expect(outcomes, seen).toContain(expected)
    if (endpoint.path === '/oauth2/token') expect(outcomes, seen).toContain('400 invalid_scope')
    if (endpoint.path === '/oauth2/revoke') expect(revoked.size, 'tokens revoked').toBeGreaterThan(0)
    if (endpoint.path === '/oauth2/introspect') expect(outcomes, seen).toContain('200 active')
  }, 180_000)
})
