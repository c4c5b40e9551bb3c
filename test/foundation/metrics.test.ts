import { describe, expect, it } from 'vitest'
import { AdminScope } from '../../src/scopes.js'
import { setupTestContext } from '../helper.js'
import { authHeaders } from '../support/management.js'

const context = setupTestContext()

describe('GET /metrics', () => {
  it('serves Prometheus text with request latencies by route and status, and dependency health', async () => {
    const app = await context.build()
    await app.inject({ method: 'GET', url: '/health/live' })
    await app.inject({ method: 'GET', url: '/no/such/route' })
    const response = await app.inject({ method: 'GET', url: '/metrics' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain/)
    expect(response.body).toMatch(/agentidp_http_request_duration_seconds_count\{method="GET",route="\/health\/live",status_code="200"\} 1/)
    expect(response.body).toMatch(/agentidp_http_request_duration_seconds_count\{method="GET",route="unmatched",status_code="404"\} 1/)
    expect(response.body).toContain('agentidp_dependency_up{dependency="postgres"} 1')
    expect(response.body).toContain('agentidp_dependency_up{dependency="redis"} 1')
    expect(response.body).toContain('agentidp_process_resident_memory_bytes')
  })

  it('is not public when METRICS_PUBLIC=false (the production default): it needs an access token with metrics:read', async () => {
    const app = await context.build({ METRICS_PUBLIC: 'false' })
    const anonymous = await app.inject({ method: 'GET', url: '/metrics' })
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer /)
    expect(anonymous.json()).toMatchObject({ type: 'urn:agentidp:problem:unauthorized', status: 401 })
    const otherScope = await app.inject({ method: 'GET', url: '/metrics', headers: await authHeaders(app, [AdminScope.AgentsRead]) })
    expect(otherScope.statusCode).toBe(403)
    expect(otherScope.headers['www-authenticate']).toMatch(/scope="metrics:read"/)
    const scraper = await app.inject({ method: 'GET', url: '/metrics', headers: await authHeaders(app, [AdminScope.MetricsRead]) })
    expect(scraper.statusCode).toBe(200)
    expect(scraper.body).toContain('agentidp_dependency_up')
  })

  it('requires the bearer METRICS_TOKEN when one is set', async () => {
    const app = await context.build({ METRICS_TOKEN: 'scrape-token-123' })
    const anonymous = await app.inject({ method: 'GET', url: '/metrics' })
    expect(anonymous.statusCode).toBe(401)
    expect(anonymous.headers['www-authenticate']).toMatch(/^Bearer /)
    const wrong = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer nope' } })
    expect(wrong.statusCode).toBe(401)
    const right = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer scrape-token-123' } })
    expect(right.statusCode).toBe(200)
  })
})
