import { createServer, type Server } from 'node:http'
import type { AddressInfo, LookupFunction } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isPublicAddress, OutboundRefused, outboundRequest } from '../../src/outbound.js'

/** A resolver that answers `address` for every name: what a hostile DNS server would do. */
const resolvingTo = (address: string): LookupFunction => (_hostname, options, callback) => {
  const family = address.includes(':') ? 6 : 4
  if ((options as { all?: boolean }).all === true) (callback as unknown as (e: null, a: Array<{ address: string, family: number }>) => void)(null, [{ address, family }])
  else callback(null, address, family)
}

describe('outbound requests (SSRF rules)', () => {
  let server: Server
  let port: number
  beforeAll(async () => {
    server = createServer((request, response) => {
      if (request.url === '/redirect') { response.writeHead(302, { location: 'http://169.254.169.254/' }).end(); return }
      if (request.url === '/big') { response.end('x'.repeat(100_000)); return }
      if (request.url === '/slow') return // never answers
      response.end('hello')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })
  afterAll(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })

  const base = { timeoutMs: 2000, maxResponseBytes: 1024 }

  it('classifies special-purpose addresses, IPv4 inside IPv6 included', () => {
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a00:1', '2002:7f00:1::1', 'ff02::1', 'not-an-ip']) {
      expect(isPublicAddress(address), address).toBe(false)
    }
    for (const address of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(isPublicAddress(address), address).toBe(true)
  })

  it('refuses http, literal private addresses and names that resolve to one, before sending anything', async () => {
    await expect(outboundRequest(`http://example.com:${port}/`, { ...base, allowPrivateNetworks: false })).rejects.toBeInstanceOf(OutboundRefused)
    await expect(outboundRequest('https://127.0.0.1/', { ...base, allowPrivateNetworks: false })).rejects.toBeInstanceOf(OutboundRefused)
    await expect(outboundRequest('https://[::ffff:10.0.0.1]/', { ...base, allowPrivateNetworks: false })).rejects.toBeInstanceOf(OutboundRefused)
    await expect(outboundRequest('https://user:pw@example.com/', { ...base, allowPrivateNetworks: false })).rejects.toBeInstanceOf(OutboundRefused)
    // DNS rebinding: the name is checked on what the resolver answers for this very connection.
    await expect(outboundRequest('https://rebinding.example/', { ...base, allowPrivateNetworks: false, lookup: resolvingTo('169.254.169.254') })).rejects.toBeInstanceOf(OutboundRefused)
    await expect(outboundRequest('https://rebinding.example/', { ...base, allowPrivateNetworks: false, lookup: resolvingTo('::1') })).rejects.toBeInstanceOf(OutboundRefused)
  })

  it('with private networks allowed, speaks http to them; never follows a redirect; caps the body; times out', async () => {
    const allowed = { ...base, allowPrivateNetworks: true }
    const ok = await outboundRequest(`http://receiver.test:${port}/`, { ...allowed, lookup: resolvingTo('127.0.0.1') })
    expect(ok).toMatchObject({ status: 200, truncated: false })
    expect(ok.body.toString()).toBe('hello')
    const redirect = await outboundRequest(`http://127.0.0.1:${port}/redirect`, allowed)
    expect(redirect.status).toBe(302)
    const big = await outboundRequest(`http://127.0.0.1:${port}/big`, allowed)
    expect(big.truncated).toBe(true)
    expect(big.body.length).toBe(1024)
    await expect(outboundRequest(`http://127.0.0.1:${port}/slow`, { ...allowed, timeoutMs: 200 })).rejects.toThrow(/no answer within 200 ms/)
  })
})
