import { DEFAULT_ORG_ID } from '../../src/database.js'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { connect } from 'node:net'
import type { LightMyRequestResponse } from 'fastify'
import { calculateJwkThumbprint, exportJWK } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { AdminScope } from '../../src/scopes.js'
import { LogCapture, setupTestContext } from '../helper.js'
import { auditEvents, authHeaders, createAgent, createCredential } from '../support/management.js'
import { mintAccessToken } from '../support/tokens.js'

const context = setupTestContext()

let other: { privateKey: KeyObject, publicKey: KeyObject, kid: string }
beforeAll(async () => {
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const jwk = await exportJWK(pair.publicKey)
  other = { ...pair, kid: await calculateJwkThumbprint({ kty: 'RSA', n: jwk.n, e: jwk.e }) }
})

const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

async function list (app: App, authorization: string | string[]): Promise<LightMyRequestResponse> {
  // An array sends the header once per value, as a client repeating it would.
  return await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization } as Record<string, string> })
}

/** A refused request: the status, problem+json, the Bearer challenge naming the error, and no agent listed. */
function expectRefused (response: LightMyRequestResponse, status: number, error?: string): void {
  expect(response.statusCode, response.body).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
  expect(response.json()).toMatchObject({ status })
  expect(response.json()).not.toHaveProperty('items')
  const challenge = response.headers['www-authenticate'] as string
  expect(challenge).toMatch(/^Bearer realm="agentidp"/)
  if (error === undefined) expect(challenge).not.toMatch(/error=/)
  else expect(challenge).toContain(`error="${error}"`)
}

const invalidToken = async (app: App, token: string): Promise<void> => {
  expectRefused(await list(app, `Bearer ${token}`), 401, 'invalid_token')
}

describe('hostile tokens at the management API', () => {
  it('a well-formed token of ours is accepted (the control for every case below)', async () => {
    const app = await context.build()
    expect((await list(app, `Bearer ${await mintAccessToken(app)}`)).statusCode).toBe(200)
    // The scheme is case-insensitive (RFC 9110 §11.1).
    expect((await list(app, `bearer ${await mintAccessToken(app)}`)).statusCode).toBe(200)
  })

  it('alg none: 401 invalid_token', async () => {
    const app = await context.build()
    const genuine = await mintAccessToken(app)
    const [, payload] = genuine.split('.')
    for (const alg of ['none', 'None', 'NONE']) {
      await invalidToken(app, `${b64({ alg, typ: 'at+jwt', kid: app.keys.current.kid })}.${payload}.`)
    }
  })

  it('HS256 signed with our public key as the HMAC secret: 401 invalid_token', async () => {
    const app = await context.build()
    const pem = app.keys.current.key.export({ type: 'spki', format: 'pem' }) as string
    for (const secret of [pem, pem.trim(), JSON.stringify(app.keys.current.jwk)]) {
      await invalidToken(app, await mintAccessToken(app, { header: { alg: 'HS256' }, key: new TextEncoder().encode(secret) }))
    }
  })

  it('a kid that is not ours, or none: 401 invalid_token', async () => {
    const app = await context.build()
    await invalidToken(app, await mintAccessToken(app, { header: { kid: 'not-our-kid' } }))
    await invalidToken(app, await mintAccessToken(app, { header: { kid: '' } }))
    await invalidToken(app, await mintAccessToken(app, { header: { kid: undefined } }))
  })

  it('a kid that is a path or a URL: 401 invalid_token, nothing fetched or read', async () => {
    const app = await context.build()
    for (const kid of ['../../etc/passwd', '/etc/passwd', 'file:///etc/passwd', 'https://attacker.example/jwks.json', `../${app.keys.current.kid}`]) {
      await invalidToken(app, await mintAccessToken(app, { header: { kid } }))
    }
    // jku / x5u / jwk pointing elsewhere are not followed: the key is chosen by our kid only.
    await invalidToken(app, await mintAccessToken(app, { key: other.privateKey, header: { jku: 'https://attacker.example/jwks.json', jwk: { kty: 'RSA', n: (await exportJWK(other.publicKey)).n as string, e: 'AQAB' } } }))
  })

  it('a valid signature by another RSA key, under our kid or its own: 401 invalid_token', async () => {
    const app = await context.build()
    await invalidToken(app, await mintAccessToken(app, { key: other.privateKey }))
    await invalidToken(app, await mintAccessToken(app, { key: other.privateKey, header: { kid: other.kid } }))
  })

  it('expired: 401 invalid_token saying so', async () => {
    const app = await context.build()
    const response = await list(app, `Bearer ${await mintAccessToken(app, { expiresIn: -60 })}`)
    expectRefused(response, 401, 'invalid_token')
    expect(response.json().detail).toBe('the access token has expired')
  })

  it('not yet valid: nbf in the future, iat in the future, or a jti from the future: 401 invalid_token', async () => {
    const app = await context.build()
    const now = Math.floor(Date.now() / 1000)
    await invalidToken(app, await mintAccessToken(app, { notBefore: now + 600 }))
    await invalidToken(app, await mintAccessToken(app, { issuedAt: now + 600, expiresIn: 1200 }))
    // A UUIDv7 jti carries the issue time the watermarks compare: one from the future would outlive a suspension.
    const future = (Date.now() + 600_000).toString(16).padStart(12, '0')
    await invalidToken(app, await mintAccessToken(app, { jti: `${future.slice(0, 8)}-${future.slice(8)}-7000-8000-000000000000` }))
    // Within the clock tolerance it is fine.
    expect((await list(app, `Bearer ${await mintAccessToken(app, { issuedAt: now + 2 })}`)).statusCode).toBe(200)
  })

  it('another issuer: 401 invalid_token naming the issuer expected, in the answer, the log and the audit reason', async () => {
    const logs = new LogCapture()
    const app = await context.build({}, { logs })
    for (const iss of ['https://attacker.example', `${app.config.issuer}/`, app.config.issuer.toUpperCase()]) {
      const response = await list(app, `Bearer ${await mintAccessToken(app, { iss })}`)
      expectRefused(response, 401, 'invalid_token')
      const detail = `the access token was issued by ${iss}, not by this server (ISSUER is ${app.config.issuer})`
      expect(response.json().detail).toBe(detail)
      expect(response.headers['www-authenticate']).toContain(`error_description="${detail}"`)
      const [event] = (await auditEvents(app, 'auth.failed')).filter((e) => e.data.reason === detail)
      expect(event, detail).toBeDefined()
    }
    const warnings = logs.lines.map((line) => JSON.parse(line)).filter((line) => line.msg === 'access token from another issuer refused')
    expect(warnings.map((line) => [line.expected, line.iss])).toEqual([
      [app.config.issuer, 'https://attacker.example'], [app.config.issuer, `${app.config.issuer}/`], [app.config.issuer, app.config.issuer.toUpperCase()]
    ])
    // An iss that could not go into a header or a log line as it is: refused as any invalid token.
    for (const iss of ['https://a.example/\r\nx: y', 'x'.repeat(300)]) {
      const response = await list(app, `Bearer ${await mintAccessToken(app, { iss })}`)
      expectRefused(response, 401, 'invalid_token')
      expect(response.json().detail).toBe('the access token is invalid')
    }
  })

  it('typ JWT, another typ, or none at all: 401 invalid_token', async () => {
    const app = await context.build()
    for (const typ of ['JWT', 'jwt', 'application/jwt', 'id_token+jwt']) await invalidToken(app, await mintAccessToken(app, { typ }))
    await invalidToken(app, await mintAccessToken(app, { typ: null }))
    // RFC 9068 §4: "application/at+jwt" is the same type as "at+jwt".
    expect((await list(app, `Bearer ${await mintAccessToken(app, { typ: 'application/at+jwt' })}`)).statusCode).toBe(200)
  })

  it('an aud that does not include the issuer: 401 invalid_token; one that includes it among others is accepted', async () => {
    const app = await context.build()
    await invalidToken(app, await mintAccessToken(app, { aud: ['https://api.example.com', 'https://other.example.com'] }))
    await invalidToken(app, await mintAccessToken(app, { aud: `${app.config.issuer}/api` }))
    expect((await list(app, `Bearer ${await mintAccessToken(app, { aud: ['https://api.example.com', app.config.issuer] })}`)).statusCode).toBe(200)
  })

  it('claims of the wrong shape, though signed by our key: 401 invalid_token, not a 500', async () => {
    const app = await context.build()
    await invalidToken(app, await mintAccessToken(app, { sub: 'not-an-agent-id' }))
    await invalidToken(app, await mintAccessToken(app, { claims: { scope: 42 } }))
    await invalidToken(app, await mintAccessToken(app, { claims: { client_id: ['a'] } }))
    await invalidToken(app, await mintAccessToken(app, { claims: { credential_id: 'not-a-credential-id' } }))
  })

  it('revoked by jti: 401 invalid_token', async () => {
    const app = await context.build()
    const jti = newId()
    const sub = newId()
    const token = await mintAccessToken(app, { jti, sub })
    expect((await list(app, `Bearer ${token}`)).statusCode).toBe(200)
    await app.revocations.revokeToken({ orgId: DEFAULT_ORG_ID, jti, agentId: sub, issuedAtMs: Date.now(), expiresAtMs: Date.now() + 300_000 }, 'test')
    const response = await list(app, `Bearer ${token}`)
    expectRefused(response, 401, 'invalid_token')
    expect(response.json().detail).toBe('the access token has been revoked')
  })

  it('of an agent suspended after issue: 401, and reactivation does not revive it', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'admin-ish', scopes: [AdminScope.AgentsRead] })
    const token = await mintAccessToken(app, { sub: agent.id, clientId: agent.client_id, scopes: [AdminScope.AgentsRead] })
    expect((await list(app, `Bearer ${token}`)).statusCode).toBe(200)
    const patch = async (status: string) => await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app), payload: { status } })
    expect((await patch('suspended')).statusCode).toBe(200)
    await invalidToken(app, token)
    expect((await patch('active')).statusCode).toBe(200)
    await invalidToken(app, token)
    // A token issued after the reactivation works.
    expect((await list(app, `Bearer ${await mintAccessToken(app, { sub: agent.id, scopes: [AdminScope.AgentsRead] })}`)).statusCode).toBe(200)
  })

  it('of a decommissioned agent, or of a revoked credential (credential_id): 401 invalid_token', async () => {
    const app = await context.build()
    const agent = await createAgent(app, { name: 'retiring' })
    const kept = await createCredential(app, agent.id)
    const revoked = await createCredential(app, agent.id)
    const viaKept = await mintAccessToken(app, { sub: agent.id, claims: { credential_id: kept.id } })
    const viaRevoked = await mintAccessToken(app, { sub: agent.id, claims: { credential_id: revoked.id } })
    const remove = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}/credentials/${revoked.id}`, headers: await authHeaders(app) })
    expect(remove.statusCode).toBe(204)
    await invalidToken(app, viaRevoked)
    expect((await list(app, `Bearer ${viaKept}`)).statusCode).toBe(200)
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agent.id}`, headers: await authHeaders(app) })).statusCode).toBe(204)
    await invalidToken(app, viaKept)
  })

  it('truncated: 401 invalid_token', async () => {
    const app = await context.build()
    const token = await mintAccessToken(app)
    const [header, payload, signature] = token.split('.') as [string, string, string]
    for (const cut of [token.slice(0, -1), token.slice(0, -20), `${header}.${payload}.`, `${header}.${payload}`, header, `${header}.${payload}.${signature.slice(0, signature.length / 2)}`]) {
      await invalidToken(app, cut)
    }
  })

  it('padded with extra characters or an extra segment: 401 invalid_token', async () => {
    const app = await context.build()
    const token = await mintAccessToken(app)
    for (const padded of [`${token}A`, `A${token}`, `${token}=`, `${token}.`, `${token}.${token.split('.')[1] as string}`, `${token}..`]) {
      await invalidToken(app, padded)
    }
    // Whitespace or another token after it is not a b64token: a malformed header.
    expectRefused(await list(app, `Bearer ${token} `), 400, 'invalid_request')
    expectRefused(await list(app, `Bearer ${token} ${token}`), 400, 'invalid_request')
  })

  it('100 KB long: 401 invalid_token, refused before parsing', async () => {
    const app = await context.build()
    const token = await mintAccessToken(app)
    const [header, payload, signature] = token.split('.') as [string, string, string]
    await invalidToken(app, 'A'.repeat(100 * 1024))
    await invalidToken(app, `${header}.${payload}${'A'.repeat(100 * 1024)}.${signature}`)
  })

  it('a garbage or foreign Authorization scheme: 401 with the Bearer challenge; a malformed Bearer: 400 invalid_request', async () => {
    const app = await context.build()
    const token = await mintAccessToken(app)
    for (const authorization of ['Basic dGVzdDp0ZXN0', `Token ${token}`, `Bearer${token}`, `DPoP${token}`, 'garbage', '', `JWT ${token}`]) {
      expectRefused(await list(app, authorization), 401)
    }
    // DPoP is a scheme of this server's (RFC 9449): a token not bound to a key is refused under it, with its challenge.
    const dpop = await list(app, `DPoP ${token}`)
    expect(dpop.statusCode).toBe(401)
    expect(dpop.headers['www-authenticate']).toMatch(/^DPoP realm="agentidp", error="invalid_token"/)
    for (const authorization of ['Bearer', 'Bearer ', `Bearer  ${token}`, 'Bearer "quoted"', 'Bearer a,b', 'Bearer é']) {
      expectRefused(await list(app, authorization), 400, 'invalid_request')
    }
  })

  it('two Authorization headers: 400 invalid_request, even when both hold good tokens', async () => {
    const app = await context.build()
    const good = `Bearer ${await mintAccessToken(app)}`
    expectRefused(await list(app, [good, good]), 400, 'invalid_request')
    expectRefused(await list(app, [good, 'Basic dGVzdDp0ZXN0']), 400, 'invalid_request')
  })

  it('every refusal above is one auth.failed event with its reason; a 403 for a missing scope is not', async () => {
    const app = await context.build()
    const before = (await auditEvents(app, 'auth.failed')).length
    await invalidToken(app, await mintAccessToken(app, { expiresIn: -60 }))
    expectRefused(await list(app, 'Basic dGVzdDp0ZXN0'), 401)
    expectRefused(await list(app, `Bearer ${await mintAccessToken(app, { scopes: [AdminScope.AuditRead] })}`), 403, 'insufficient_scope')
    const failed = (await auditEvents(app, 'auth.failed')).slice(before)
    expect(failed.map((event) => event.data.reason)).toEqual(['the access token has expired', 'a Bearer access token is required; the Authorization header uses another scheme'])
    expect(failed.every((event) => event.actor === 'anonymous' && event.data.endpoint === '/api/v1/agents')).toBe(true)
  })
})

describe('hostile headers over real HTTP', () => {
  /** A GET written byte for byte on a socket, so repeated headers reach the server as sent. */
  async function rawGet (port: number, headers: Array<[string, string]>): Promise<{ status: number, head: string, body: string }> {
    return await new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      let received = ''
      socket.setTimeout(5000, () => socket.destroy(new Error('timed out')))
      socket.setEncoding('utf8')
      socket.on('data', (chunk: string) => { received += chunk })
      socket.on('error', reject)
      socket.on('close', () => {
        const [head = '', body = ''] = received.split('\r\n\r\n')
        resolve({ status: Number(head.split(' ')[1]), head: head.toLowerCase(), body })
      })
      socket.write(`GET /api/v1/agents HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n${headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`)
    })
  }

  it('two Authorization headers on the wire are refused, though Node keeps only the first', async () => {
    const app = await context.build()
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const good = `Bearer ${await mintAccessToken(app)}`
    expect((await rawGet(port, [['authorization', good]])).status).toBe(200)
    const twice = await rawGet(port, [['authorization', good], ['Authorization', 'Bearer forged']])
    expect(twice.status).toBe(400)
    expect(twice.head).toContain('www-authenticate: bearer realm="agentidp", error="invalid_request"')
  })

  it('a 100 KB Authorization header is refused by the HTTP layer (431), and the server keeps serving', async () => {
    const app = await context.build()
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const huge = await rawGet(port, [['authorization', `Bearer ${'A'.repeat(100 * 1024)}`]])
    expect(huge.status).toBe(431)
    expect((await rawGet(port, [['authorization', `Bearer ${await mintAccessToken(app)}`]])).status).toBe(200)
  })
})
