import { describe, expect, it } from 'vitest'
import { setupTestContext } from '../helper.js'

const context = setupTestContext()

describe('health', () => {
  it('live answers 200', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/health/live' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
  })

  it('ready answers 200 when PostgreSQL and Redis answer', async () => {
    const app = await context.build()
    const response = await app.inject({ method: 'GET', url: '/health/ready' })
    expect(response.statusCode).toBe(200)
    expect(response.json().checks.postgres.status).toBe('up')
    expect(response.json().checks.redis.status).toBe('up')
  })
})
