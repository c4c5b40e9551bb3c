import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import { request as httpRequest, type Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http'
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/**
 * Requests this server makes to addresses someone else chose (a federation issuer's keys, a webhook receiver): https
 * only, never to loopback, private, link-local or other special-purpose addresses, no redirect followed, bounded in
 * time and size. The address is checked when the socket connects, on what the resolver returned for that connection,
 * so a name that resolves to a public address when checked and a private one when used (DNS rebinding) gains nothing.
 */

/** Why a destination was refused before any byte was sent to it. */
export class OutboundRefused extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'OutboundRefused'
  }
}

/** Special-purpose ranges (RFC 6890 and its IPv6 counterparts) that are never a public destination. */
const SPECIAL = new BlockList()
for (const [network, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
] as const) SPECIAL.addSubnet(network, prefix, 'ipv4')
for (const [network, prefix] of [
  ['::', 128], ['::1', 128], ['100::', 64], ['2001::', 23], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10],
  ['fec0::', 10], ['ff00::', 8]
] as const) SPECIAL.addSubnet(network, prefix, 'ipv6')

// IPv6 forms that carry an IPv4 address: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
const EMBEDDED_V4 = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/i

/** The IPv4 address an IPv6 address carries, in dotted form, or undefined. */
function embeddedIpv4 (address: string): string | undefined {
  const dotted = EMBEDDED_V4.exec(address)?.[1]
  if (dotted !== undefined) return dotted
  // The same prefixes written in hex (::ffff:7f00:1), and 6to4's 2002:AABB:CCDD::/48.
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address) ?? /^2002:([0-9a-f]{1,4}):([0-9a-f]{1,4}):/i.exec(address)
  if (hex === null) return undefined
  const high = parseInt(hex[1] as string, 16)
  const low = parseInt(hex[2] as string, 16)
  return [high >> 8, high & 255, low >> 8, low & 255].join('.')
}

/** Whether an IP address may be connected to when private networks are not allowed. */
export function isPublicAddress (address: string): boolean {
  const family = isIP(address)
  if (family === 4) return !SPECIAL.check(address, 'ipv4')
  if (family !== 6) return false
  const unzoned = address.split('%')[0] as string
  const v4 = embeddedIpv4(unzoned.toLowerCase())
  if (v4 !== undefined) return isIP(v4) === 4 && !SPECIAL.check(v4, 'ipv4')
  return !SPECIAL.check(unzoned, 'ipv6')
}

export interface OutboundOptions {
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  /** The whole exchange, from connecting to the last byte read. */
  timeoutMs: number
  /** Bytes of the response body kept; the rest is not read and the connection is closed. */
  maxResponseBytes: number
  /** http and special-purpose addresses allowed (tests, private clusters): FEDERATION_/WEBHOOK_ALLOW_PRIVATE_NETWORKS. */
  allowPrivateNetworks: boolean
  /** The resolver, dns.lookup's shape (tests give their own). */
  lookup?: LookupFunction
  /** Aborts the request early (a worker shutting down): it then rejects with Error('aborted'). */
  signal?: AbortSignal
  /**
   * Connections kept alive for the next request to the same host and port (a webhook worker's, whose receivers get
   * request after request). Without them, one connection per request.
   */
  keepAlive?: KeepAliveAgents
}

/**
 * Keep-alive agents, one per scheme. A kept connection was checked when it was opened (its lookup went through the
 * rules below), so reusing it connects nowhere new: whatever a name resolves to later applies to the next
 * connection. An agent serves one resolver: a caller that changes its resolver makes new agents.
 */
export interface KeepAliveAgents { http: HttpAgent, https: HttpsAgent }

export interface OutboundResponse {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The body was longer than maxResponseBytes: `body` holds its beginning only. */
  truncated: boolean
}

/** Refuses a URL this module will never request, before any lookup: scheme, credentials in it, a literal address. */
export function checkOutboundUrl (url: URL, allowPrivateNetworks: boolean): void {
  if (url.protocol !== 'https:' && !(allowPrivateNetworks && url.protocol === 'http:')) {
    throw new OutboundRefused(allowPrivateNetworks ? 'only http and https URLs are allowed' : 'only https URLs are allowed')
  }
  if (url.username !== '' || url.password !== '') throw new OutboundRefused('URLs with credentials are not allowed')
  const host = url.hostname.replace(/^\[|\]$/g, '')
  // A literal address is connected to without a lookup: checked here instead.
  if (isIP(host) !== 0 && !allowPrivateNetworks && !isPublicAddress(host)) throw new OutboundRefused(`${host} is not a public address`)
}

/**
 * A lookup that answers only public addresses (all of them, when `allowPrivateNetworks`): what the socket connects
 * to is what was checked.
 */
function guardedLookup (resolve: LookupFunction, allowPrivateNetworks: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) { callback(error, '', 0); return }
      const list = (Array.isArray(addresses) ? addresses : [{ address: addresses as unknown as string, family: 4 }]) as LookupAddress[]
      const usable = allowPrivateNetworks ? list : list.filter((entry) => isPublicAddress(entry.address))
      if (usable.length === 0) {
        callback(Object.assign(new OutboundRefused(`${hostname} resolves to no public address`), { code: 'EOUTBOUNDREFUSED' }), '', 0)
        return
      }
      if ((options as { all?: boolean }).all === true) {
        (callback as unknown as (error: null, addresses: LookupAddress[]) => void)(null, usable)
      } else {
        const first = usable[0] as LookupAddress
        callback(null, first.address, first.family)
      }
    })
  }
}

/**
 * One request under the rules above. Resolves with any status (3xx included: redirects are answers, never followed);
 * rejects with OutboundRefused for a destination the rules refuse, or another Error for a network failure or timeout.
 */
export async function outboundRequest (target: string | URL, options: OutboundOptions): Promise<OutboundResponse> {
  const url = new URL(target)
  checkOutboundUrl(url, options.allowPrivateNetworks)
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest
  const timeout = AbortSignal.timeout(options.timeoutMs)
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal])
  return await new Promise<OutboundResponse>((resolve, reject) => {
    const request = send(url, {
      method: options.method ?? 'GET',
      headers: { 'user-agent': 'AgentIdP', ...options.headers },
      lookup: guardedLookup(options.lookup ?? (dnsLookup as LookupFunction), options.allowPrivateNetworks),
      // One connection per request unless the caller keeps them alive (checked when opened either way).
      agent: options.keepAlive === undefined ? false : url.protocol === 'https:' ? options.keepAlive.https : options.keepAlive.http,
      signal
    }, (response) => {
      const chunks: Buffer[] = []
      let length = 0
      let truncated = false
      response.on('data', (chunk: Buffer) => {
        if (truncated) return
        const room = options.maxResponseBytes - length
        if (chunk.length > room) {
          chunks.push(chunk.subarray(0, room))
          length += room
          truncated = true
          response.destroy()
          finish()
          return
        }
        chunks.push(chunk)
        length += chunk.length
      })
      let finished = false
      const finish = (): void => {
        if (finished) return
        finished = true
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks, length), truncated })
      }
      response.on('end', finish)
      response.on('error', (error) => { if (!finished) reject(error) })
    })
    request.on('error', (error: Error & { code?: string }) => {
      reject(error.name === 'OutboundRefused' || error.code === 'EOUTBOUNDREFUSED' ? new OutboundRefused(error.message) : timeout.aborted ? new Error(`no answer within ${options.timeoutMs} ms`) : options.signal?.aborted === true ? new Error('aborted') : error)
    })
    request.end(options.body)
  })
}
