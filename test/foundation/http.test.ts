import { Type } from 'typebox'
import { describe, expect, it } from 'vitest'
import { LogCapture, setupTestContext } from '../helper.js'

const context = setupTestContext()

/** An app with one JSON route of the test's own, to exercise the shared error handling. */
async function appWithEchoRoute (env: Record<string, string> = {}, logs?: LogCapture) {
  const app = await context.build(env, { logs })
  app.post('/test/echo', {
    schema: { body: Type.Object({ name: Type.String({ minLength: 1 }) }, { additionalProperties: false }) }
  }, async (request) => request.body)
  return app
}

describe('headers', () => {
  it('every response says nosniff; management API and OAuth answers, errors included, are never cached', async () => {
    const app = await context.build()
    const answers = {
      health: await app.inject({ method: 'GET', url: '/health/live' }),
      unknown: await app.inject({ method: 'GET', url: '/no/such/route' }),
      badUrl: await app.inject({ method: 'GET', url: '/api/v1/agents/%E0%A4%A' }),
      api: await app.inject({ method: 'GET', url: '/api/v1/agents' }),
      apiUnknown: await app.inject({ method: 'GET', url: '/api/v1/nothing' }),
      oauthError: await app.inject({ method: 'POST', url: '/oauth2/token', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'grant_type=password' }),
      discovery: await app.inject({ method: 'GET', url: '/.well-known/openid-configuration' })
    }
    for (const [name, response] of Object.entries(answers)) {
      expect(response.headers['x-content-type-options'], name).toBe('nosniff')
      expect(response.headers['strict-transport-security'], name).toBeUndefined()
    }
    for (const name of ['api', 'apiUnknown', 'oauthError'] as const) {
      expect(answers[name].statusCode, name).toBeGreaterThanOrEqual(400)
      expect(answers[name].headers['cache-control'], name).toBe('no-store')
    }
    expect(answers.oauthError.headers.pragma).toBe('no-cache')
    expect(answers.discovery.headers['cache-control']).not.toBe('no-store')
  })

  it('sends Strict-Transport-Security when the issuer is https', async () => {
    const app = await context.build({ ISSUER: 'https://idp.example.com' })
    const response = await app.inject({ method: 'GET', url: '/health/live' })
    expect(response.headers['strict-transport-security']).toBe('max-age=31536000')
  })
})

describe('errors', () => {
  it('problem types are fixed URNs by status, whatever the title says', async () => {
    const app = await context.build()
    const unauthenticated = await app.inject({ method: 'GET', url: '/api/v1/agents' })
    expect(unauthenticated.json()).toMatchObject({ type: 'urn:agentidp:problem:unauthorized', title: 'Unauthorized', status: 401 })
    const wrongType = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: { 'content-type': 'text/csv' }, payload: 'a,b' })
    expect(wrongType.json()).toMatchObject({ type: 'urn:agentidp:problem:unsupported-media-type', status: 415 })
  })

  it('an unknown route is a 404 problem+json', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/no/such/route?x=1' })
    expect(response.statusCode).toBe(404)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json()).toEqual({ type: 'urn:agentidp:problem:not-found', title: 'Not Found', status: 404, detail: 'no route GET /no/such/route', instance: '/no/such/route' })
  })

  it('malformed JSON is a 400 problem+json', async () => {
    const app = await appWithEchoRoute()
    const response = await app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'application/json' }, payload: '{"name": ' })
    expect(response.statusCode).toBe(400)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(response.json()).toMatchObject({ status: 400, detail: 'body is not valid JSON' })
  })

  it('a body that fails its schema is a 400 naming where', async () => {
    const app = await appWithEchoRoute()
    const response = await app.inject({ method: 'POST', url: '/test/echo', payload: { name: '' } })
    expect(response.statusCode).toBe(400)
    expect(response.json().errors).toEqual([{ location: 'body/name', message: expect.any(String) }])
  })

  it('a wrong content type is a 415, an oversized body a 413, both as JSON', async () => {
    const app = await appWithEchoRoute()
    const wrongType = await app.inject({ method: 'POST', url: '/test/echo', headers: { 'content-type': 'text/csv' }, payload: 'a,b' })
    expect(wrongType.statusCode).toBe(415)
    expect(wrongType.json()).toMatchObject({ status: 415 })
    const huge = await app.inject({ method: 'POST', url: '/test/echo', payload: { name: 'x'.repeat(200_000) } })
    expect(huge.statusCode).toBe(413)
    expect(huge.json()).toMatchObject({ status: 413 })
  })

  it('an unexpected failure is a bare 500 with no stack trace or message, and is logged', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    app.get('/test/boom', async () => { throw new Error('secret internals at /srv/app.js:42') })
    const response = await app.inject({ method: 'GET', url: '/test/boom' })
    expect(response.statusCode).toBe(500)
    expect(response.body).not.toContain('secret internals')
    expect(response.json()).toMatchObject({ status: 500, title: 'Internal Server Error' })
    expect(logs.text).toContain('secret internals')
  })
})

describe('request ids', () => {
  it('honours and echoes X-Request-Id, and logs it', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    const response = await app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'trace-abc_123' } })
    expect(response.headers['x-request-id']).toBe('trace-abc_123')
    expect(logs.lines.some((line) => JSON.parse(line).reqId === 'trace-abc_123')).toBe(true)
  })

  it('replaces an unusable one with a fresh id', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': 'x'.repeat(500) } })
    expect(response.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    const other = await app.inject({ method: 'GET', url: '/health/live' })
    expect(other.headers['x-request-id']).not.toBe(response.headers['x-request-id'])
  })
})

describe('logging', () => {
  it('redacts authorization headers, secrets and tokens in every log line', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    app.addHook('onRequest', async (request) => {
      request.log.info({ req: { headers: request.headers }, client_secret: 'sekret-value-1', nested: { access_token: 'token-value-2' } }, 'probe')
    })
    await app.inject({ method: 'GET', url: '/health/live?client_secret=sekret-value-3', headers: { authorization: 'Bearer token-value-4' } })
    expect(logs.lines.length).toBeGreaterThan(0)
    for (const value of ['sekret-value-1', 'token-value-2', 'sekret-value-3', 'token-value-4']) expect(logs.text).not.toContain(value)
    expect(logs.text).toContain('[redacted]')
  })
})

describe('CORS', () => {
  it('allows any origin by default', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/health/live', headers: { origin: 'https://app.example' } })
    expect(response.headers['access-control-allow-origin']).toBe('*')
  })

  it('allows only the configured origins', async () => {
    const app = await context.build({ CORS_ORIGIN: 'https://a.example,https://b.example' })
    const allowed = await app.inject({ method: 'OPTIONS', url: '/health/live', headers: { origin: 'https://b.example', 'access-control-request-method': 'GET' } })
    expect(allowed.headers['access-control-allow-origin']).toBe('https://b.example')
    const refused = await app.inject({ method: 'GET', url: '/health/live', headers: { origin: 'https://evil.example' } })
    expect(refused.headers['access-control-allow-origin']).toBeUndefined()
  })
})

describe('OpenAPI', () => {
  it('serves an OpenAPI 3.1 document generated from the route schemas', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/docs/json' })
    expect(response.statusCode).toBe(200)
    const document = response.json()
    expect(document.openapi).toBe('3.1.0')
    expect(document.paths['/health/live'].get.responses['200']).toBeDefined()
    expect(document.paths['/health/ready'].get.responses['503']).toBeDefined()
    expect(document.components.schemas.Problem).toBeDefined()
  })

  it('every operation declares its responses', async () => {
    const app = await context.build()
    const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
    for (const [path, operations] of Object.entries<Record<string, { responses?: object }>>(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        expect(Object.keys(operation.responses ?? {}), `${method.toUpperCase()} ${path}`).not.toHaveLength(0)
      }
    }
  })

  it('the browsable UI is served from local assets, with operations listed', async () => {
    const app = await context.build()
    const page = await app.inject({ method: 'GET', url: '/docs/' })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toMatch(/text\/html/)
    const scripts = [...page.body.matchAll(/src="\.?\/?([^"]+\.js)"/g)].map((m) => m[1] as string)
    expect(scripts.length).toBeGreaterThan(0)
    for (const script of scripts) {
      const asset = await app.inject({ method: 'GET', url: `/docs/${script.replace(/^\.\//, '')}` })
      expect(asset.statusCode, script).toBe(200)
    }
    const initializer = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
    expect(initializer.body).toContain('"docExpansion":"list"')
  })
})
