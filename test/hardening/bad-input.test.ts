import { describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'
import { databaseFingerprint, prepareFuzzContext } from '../support/fuzz.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { basicAuth } from '../support/oauth.js'

// What the property runs of bad-input.long.test.ts (npm run test:long) found, pinned: each a regression test.
const context = setupTestContext()

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

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

  it('a client_id holding NUL (Basic credentials encoded in UTF-16) is a 401 invalid_client recorded as auth.failed, not a 500 from SQL', async () => {
    const app = await context.build()
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const { clientId, secret } = ctx.client
    const form = 'grant_type=client_credentials'
    const attempts = [
      { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`, 'utf16le').toString('base64')}`, payload: form },
      { authorization: basicAuth(`${clientId}\u0000`, secret), payload: form },
      { payload: `${form}&client_id=${clientId}%00&client_secret=${secret}` }
    ]
    for (const { authorization, payload } of attempts) {
      const response = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization === undefined ? {} : { authorization }) }, payload })
      expect(response.statusCode, response.body).toBe(401)
      expect(response.json().error).toBe('invalid_client')
    }
    const failures = (await auditEvents(app, 'auth.failed')).slice(-attempts.length)
    expect(failures.map((event) => event.data.reason)).toEqual(['malformed_credentials', 'malformed_credentials', 'malformed_credentials'])
    expect(failures.every((event) => event.agent_id === null)).toBe(true)
  })

  it('every 401 invalid_client is an auth.failed event, also when the credentials are missing or cannot be read', async () => {
    const app = await context.build()
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const attempts: Array<[string | undefined, string]> = [[undefined, 'no_credentials'], [ctx.adminBearer, 'no_credentials'], ['Basic !!!', 'malformed_credentials'], [`Basic ${Buffer.from('%ZZ:x').toString('base64')}`, 'malformed_credentials']]
    const recordedBefore = (await auditEvents(app, 'auth.failed')).length
    for (const [authorization, reason] of attempts) {
      const response = await app.inject({ method: 'POST', url: '/oauth2/introspect', headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization === undefined ? {} : { authorization }) }, payload: `token=${ctx.tokens.own[0] as string}` })
      expect(response.statusCode).toBe(401)
      expect(response.headers['www-authenticate']).toMatch(/^Basic /)
      const [failure] = (await auditEvents(app, 'auth.failed')).slice(-1)
      expect(failure).toMatchObject({ agent_id: null, actor: 'anonymous', data: { endpoint: 'introspect', client_id: null, reason } })
    }
    expect(await auditEvents(app, 'auth.failed')).toHaveLength(recordedBefore + attempts.length)
  })

  it('Basic credentials that are not plain base64 are malformed (401, auth.failed), not decoded up to the first "="', async () => {
    const app = await context.build()
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const other = basicAuth('agt_nobody', 'x')
    const unpadded = ctx.clientBasic.replace(/=+$/, '')
    for (const authorization of [`${ctx.clientBasic}x`, `${unpadded}==x`, `${unpadded}===`, `${ctx.clientBasic},${ctx.clientBasic}`, `${ctx.clientBasic}, ${other}`, `${ctx.clientBasic} ${other.slice(6)}`]) {
      const recordedBefore = (await auditEvents(app, 'auth.failed')).length
      const response = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization }, payload: 'grant_type=client_credentials' })
      expect(response.statusCode, authorization).toBe(401)
      expect(response.json().error).toBe('invalid_client')
      const failures = await auditEvents(app, 'auth.failed')
      expect(failures).toHaveLength(recordedBefore + 1)
      expect(failures.at(-1)?.data.reason).toBe('malformed_credentials')
    }
    // The scheme's case and the spaces around the credentials are no part of them.
    for (const authorization of [`basic ${ctx.clientBasic.slice(6)}`, `BASIC  ${ctx.clientBasic.slice(6)} `]) {
      const response = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization }, payload: 'grant_type=client_credentials' })
      expect(response.statusCode, authorization).toBe(200)
    }
  })

  it('two Authorization headers at a client endpoint are two credentials: 400 invalid_request, no token, nothing recorded', async () => {
    const app = await context.build()
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const before = await databaseFingerprint(app)
    for (const authorization of [[ctx.clientBasic, ctx.clientBasic], [ctx.clientBasic, basicAuth('agt_nobody', ctx.client.secret)]]) {
      const response = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: authorization as unknown as string }, payload: 'grant_type=client_credentials' })
      expect(response.statusCode, response.body).toBe(400)
      expect(response.json()).toMatchObject({ error: 'invalid_request', error_description: 'the request carries more than one Authorization header' })
    }
    expect(await databaseFingerprint(app)).toEqual(before)
  })

  it('a body with a Content-Encoding is refused, not parsed as if it were plain: 400 invalid_request at OAuth endpoints, 415 elsewhere', async () => {
    const app = await context.build()
    const ctx = await prepareFuzzContext(app, createAgent, createCredential)
    const before = await databaseFingerprint(app)
    const token = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip', authorization: ctx.clientBasic }, payload: 'grant_type=client_credentials' })
    expect(token.statusCode, token.body).toBe(400)
    expect(token.json().error).toBe('invalid_request')
    const agents = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { 'content-type': 'application/json', 'content-encoding': 'br', authorization: ctx.adminBearer }, payload: JSON.stringify({ name: 'compressed' }) })
    expect(agents.statusCode, agents.body).toBe(415)
    expect(agents.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(await databaseFingerprint(app)).toEqual(before)
    // Identity is no encoding at all.
    const plain = await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'identity', authorization: ctx.clientBasic }, payload: 'grant_type=client_credentials' })
    expect(plain.statusCode, plain.body).toBe(200)
  })

  it('an OPTIONS that is no CORS preflight gets no text/plain error', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'OPTIONS', url: '/api/v1/agents' })
    expect(response.statusCode).toBe(204)
    expect(response.body).toBe('')
  })
})
