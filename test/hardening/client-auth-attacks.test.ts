import { connect } from 'node:net'
import { describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { ConfigError, loadConfig } from '../../src/config.js'
import { HashQueueFull, HashSlots, hashSlots } from '../../src/secrets.js'
import { ownerSql, setupTestContext } from '../helper.js'
import { auditEvents, createAgent, createCredential } from '../support/management.js'
import { basicAuth, postForm, requestToken } from '../support/oauth.js'

const context = setupTestContext()

async function agentWithCredential (app: App) {
  const agent = await createAgent(app, { name: 'attack target', scopes: ['weather:read'] })
  const credential = await createCredential(app, agent.id)
  return { agent, clientId: credential.client_id as string, secret: credential.client_secret as string }
}

/** argon2id verifications this app has run (dummy ones included). */
async function verifications (app: App): Promise<number> {
  return (await app.metrics.secretVerifications.get()).values[0]?.value ?? 0
}

const statuses = (responses: Array<{ statusCode: number }>): Record<number, number> => {
  const counts: Record<number, number> = {}
  for (const { statusCode } of responses) counts[statusCode] = (counts[statusCode] ?? 0) + 1
  return counts
}

/** A promise and the function that settles it: work the test holds in a hashing slot until it lets go. */
function gate (): { promise: Promise<void>, open: () => void } {
  let open = (): void => {}
  const promise = new Promise<void>((resolve) => { open = resolve })
  return { promise, open }
}

describe('the failure limiter under concurrency', () => {
  it('N concurrent wrong secrets for one client_id and address: at most the limit reach a hash, the rest get 429', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' })
    const { clientId, secret } = await agentWithCredential(app)
    const before = await verifications(app)
    const responses = await Promise.all(Array.from({ length: 20 }, async (_, i) => await requestToken(app, clientId, `${secret.slice(0, -4)}x${String(i).padStart(3, '0')}`, {}, '203.0.113.20')))
    expect(statuses(responses)).toEqual({ 401: 3, 429: 17 })
    expect(await verifications(app) - before).toBe(3)
    expect((await auditEvents(app, 'auth.failed')).filter((event) => event.data.client_id === clientId)).toHaveLength(3)
  })

  it('a success does not use the allowance', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '2' })
    const { clientId, secret } = await agentWithCredential(app)
    for (let i = 0; i < 4; i++) expect((await requestToken(app, clientId, secret, {}, '203.0.113.21')).statusCode).toBe(200)
    // Verified secrets are answered from memory: a second credential's secret is verified again each time.
    const second = (await createCredential(app, (await ownerSql(app)`select id from agents where client_id = ${clientId}`)[0]?.id)).client_secret as string
    expect((await requestToken(app, clientId, second, {}, '203.0.113.21')).statusCode).toBe(200)
    expect((await requestToken(app, clientId, 'wrong-1', {}, '203.0.113.21')).statusCode).toBe(401)
    expect((await requestToken(app, clientId, 'wrong-2', {}, '203.0.113.21')).statusCode).toBe(401)
    expect((await requestToken(app, clientId, 'wrong-3', {}, '203.0.113.21')).statusCode).toBe(429)
  })
})

describe('made-up client_ids', () => {
  it('share one limit per address, while other addresses and real client_ids are unaffected', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '3' })
    const { clientId, secret } = await agentWithCredential(app)
    const recorded = (await auditEvents(app, 'auth.failed')).length
    const responses = []
    for (let i = 0; i < 12; i++) responses.push(await requestToken(app, `agt_random${i}`, 'whatever-secret', {}, '203.0.113.30'))
    expect(statuses(responses)).toEqual({ 401: 3, 429: 9 })
    expect((await auditEvents(app, 'auth.failed')).length - recorded).toBe(3)
    expect((await requestToken(app, 'agt_random99', 'whatever-secret', {}, '198.51.100.30')).statusCode).toBe(401)
    expect((await requestToken(app, clientId, secret, {}, '203.0.113.30')).statusCode).toBe(200)
  })

  it('cost what a wrong secret costs: an unknown client_id, or an unknown credential, runs a (dummy) verification', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const before = await verifications(app)
    expect((await requestToken(app, 'agt_nobody', secret)).statusCode).toBe(401)
    expect(await verifications(app) - before).toBe(1)
    expect((await requestToken(app, clientId, `${'0'.repeat(32)}_${secret.split('_').slice(1).join('_')}`)).statusCode).toBe(401)
    expect(await verifications(app) - before).toBe(2)
    expect((await requestToken(app, clientId, `${secret.slice(0, -1)}!`)).statusCode).toBe(401)
    expect(await verifications(app) - before).toBe(3)
  })
})

describe('the audit trail never holds a secret', () => {
  it('credentials swapped (the secret where the client_id belongs): only a fingerprint of it is recorded', async () => {
    const app = await context.build()
    const { clientId, secret } = await agentWithCredential(app)
    const recorded = (await auditEvents(app, 'auth.failed')).length
    expect((await requestToken(app, secret, clientId)).statusCode).toBe(401)
    expect((await postForm(app, '/oauth2/token', { grant_type: 'client_credentials', client_id: secret, client_secret: clientId })).statusCode).toBe(401)
    const failures = (await auditEvents(app, 'auth.failed')).slice(recorded)
    const random = secret.split('_').slice(1).join('_')
    expect(JSON.stringify(failures)).not.toContain(random)
    expect(JSON.stringify(failures)).not.toContain(random.slice(0, 16))
    const swapped = failures
    expect(swapped.map((event) => event.data.reason)).toEqual(['unknown_client_or_credential', 'unknown_client_or_credential'])
    for (const event of swapped) expect(event).toMatchObject({ agent_id: null, data: { client_id: null, client_id_fingerprint: expect.stringMatching(/^[0-9a-f]{12}$/) } })
    // The same value has the same fingerprint, so repeated attempts can still be told apart from others.
    expect(swapped[0]?.data.client_id_fingerprint).toBe(swapped[1]?.data.client_id_fingerprint)
  })
})

describe('fair hashing', () => {
  it('a key takes at most its share of the slots; a freed slot goes to the next waiting key in turn', async () => {
    const slots = new HashSlots(2, 1, 10, 100)
    const started: string[] = []
    const gates = new Map<string, ReturnType<typeof gate>>()
    const job = (key: string, name: string): Promise<void> => slots.run(key, async () => {
      started.push(name)
      const held = gate()
      gates.set(name, held)
      await held.promise
    })
    const flood = Array.from({ length: 6 }, (_, i) => job('flood', `flood${i}`))
    await Promise.resolve()
    expect(started).toEqual(['flood0'])
    // The flood holds one slot of two: a bystander's first verification starts at once.
    const bystander = job('bystander', 'bystander0')
    await Promise.resolve()
    expect(started).toEqual(['flood0', 'bystander0'])
    // With every slot taken, a bystander waits for the next free slot only, not behind the flood's queue.
    const later = job('later', 'later0')
    gates.get('bystander0')?.open()
    await bystander
    await new Promise((resolve) => setImmediate(resolve))
    expect(started).toEqual(['flood0', 'bystander0', 'later0'])
    gates.get('flood0')?.open()
    gates.get('later0')?.open()
    await later
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      gates.get(`flood${i}`)?.open()
    }
    await Promise.all(flood)
    expect(started).toEqual(['flood0', 'bystander0', 'later0', 'flood1', 'flood2', 'flood3', 'flood4', 'flood5'])
    expect(slots.load).toEqual({ running: 0, waiting: 0 })
  })

  it('bounds each key\'s queue and the whole queue', async () => {
    const slots = new HashSlots(1, 1, 2, 3)
    const held = gate()
    const running = [slots.run('a', async () => await held.promise), slots.run('a', async () => await held.promise), slots.run('a', async () => await held.promise)]
    await expect(slots.run('a', async () => {})).rejects.toBeInstanceOf(HashQueueFull)
    running.push(slots.run('b', async () => await held.promise))
    await expect(slots.run('c', async () => {})).rejects.toBeInstanceOf(HashQueueFull)
    held.open()
    await Promise.all(running)
  })

  it('a flood against one client_id: its queue full, it gets 503 with Retry-After, and a bystander\'s first token is not held', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '1' })
    const target = await agentWithCredential(app)
    const bystander = await agentWithCredential(app)
    // The flood's share of the slots and of the queue, held by the test as long verifications would hold them.
    const held = gate()
    const flood = Array.from({ length: hashSlots.perKey + hashSlots.perKeyWaiting }, async () => await hashSlots.run(target.clientId, async () => await held.promise))
    try {
      const refused = await requestToken(app, target.clientId, 'wrong-secret', {}, '198.51.100.40')
      expect(refused.statusCode).toBe(503)
      expect(refused.headers['retry-after']).toBe('1')
      expect(refused.json().error).toBe('temporarily_unavailable')
      // Answered while every flood verification is still running or waiting.
      expect((await requestToken(app, bystander.clientId, bystander.secret, {}, '198.51.100.41')).statusCode).toBe(200)
      expect(hashSlots.load.waiting).toBe(hashSlots.perKeyWaiting)
    } finally {
      held.open()
      await Promise.all(flood)
    }
    // The refused attempt ran no hash and used none of the address's allowance.
    expect((await requestToken(app, target.clientId, 'wrong-secret', {}, '198.51.100.40')).statusCode).toBe(401)
  })
})

describe('TRUST_PROXY', () => {
  const failFrom = async (app: App, clientId: string, forwardedFor: string) =>
    await postForm(app, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basicAuth(clientId, 'wrong'), 'x-forwarded-for': forwardedFor }, '10.0.0.1')

  it('off by default: X-Forwarded-For is ignored, every request through one proxy shares its address', async () => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '2' })
    const { clientId } = await agentWithCredential(app)
    expect((await failFrom(app, clientId, '203.0.113.50')).statusCode).toBe(401)
    expect((await failFrom(app, clientId, '203.0.113.51')).statusCode).toBe(401)
    expect((await failFrom(app, clientId, '203.0.113.52')).statusCode).toBe(429)
  })

  it.for([['true'], ['1'], ['10.0.0.0/8']])('TRUST_PROXY=%s: the forwarded address decides whom the limiter counts', async ([trust]) => {
    const app = await context.build({ RATE_LIMIT_AUTH_FAILURES_PER_MIN: '2', TRUST_PROXY: trust })
    const { clientId } = await agentWithCredential(app)
    expect((await failFrom(app, clientId, '203.0.113.60')).statusCode).toBe(401)
    expect((await failFrom(app, clientId, '203.0.113.60')).statusCode).toBe(401)
    expect((await failFrom(app, clientId, '203.0.113.60')).statusCode).toBe(429)
    expect((await failFrom(app, clientId, '203.0.113.61')).statusCode).toBe(401)
  })

  it('is validated at start-up, naming the variable', () => {
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.7 ,::1, loopback' }).trustProxy).toEqual(['10.0.0.0/8', '192.168.1.7', '::1', 'loopback'])
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2)
    expect(loadConfig({}).trustProxy).toBe(false)
    for (const bad of ['yes', '10.0.0.0/33', '300.1.1.1', '10.0.0.0/8/1', 'example.com']) {
      expect(() => loadConfig({ TRUST_PROXY: bad })).toThrow(ConfigError)
      expect(() => loadConfig({ TRUST_PROXY: bad })).toThrow(/^TRUST_PROXY /)
    }
    expect(() => loadConfig({ REQUEST_TIMEOUT_MS: '1000', HEADERS_TIMEOUT_MS: '2000' })).toThrow(/^HEADERS_TIMEOUT_MS /)
  })
})

describe('slow requests', () => {
  it('a body not fully received within REQUEST_TIMEOUT_MS is dropped', async () => {
    const app = await context.build({ REQUEST_TIMEOUT_MS: '300' })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    socket.on('data', (chunk: Buffer) => { answer += chunk.toString('latin1') })
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    socket.write('POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=client_')
    await closed
    expect(answer).toMatch(/^HTTP\/1\.1 408 /)
  }, 20_000)
})
