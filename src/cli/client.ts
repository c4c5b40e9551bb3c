/**
 * What every `agentidp` command shares: the connection settings (flags over environment over defaults), a client
 * of a running server's HTTP API that gets its own access token by client_credentials, errors as one line, and
 * output as a table or JSON. The CLI goes through the API like any caller, so authorization and audit apply.
 */
import type { ParseArgsConfig } from 'node:util'

/** A failure to report as one line on stderr; `exitCode` 2 is a usage error, 1 anything else. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode = 1) {
    super(message)
    this.name = 'CliError'
  }
}

/** Options every command accepts, before or after its own. */
export const GLOBAL_OPTIONS = {
  url: { type: 'string' },
  'client-id': { type: 'string' },
  'client-secret': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' }
} as const satisfies NonNullable<ParseArgsConfig['options']>

export const GLOBAL_HELP = `Connection (flags, else the environment or .env):
  --url URL               AGENTIDP_URL, default http://localhost:3000
  --client-id ID          AGENTIDP_CLIENT_ID: an agent holding the scopes the command needs
  --client-secret SECRET  AGENTIDP_CLIENT_SECRET
Output:
  --json                  JSON for scripts instead of a table
  -h, --help              this help`

export const DEFAULT_URL = 'http://localhost:3000'

/** Parsed values of the global options. */
export interface GlobalValues {
  url?: string
  'client-id'?: string
  'client-secret'?: string
  json?: boolean
}

/** An RFC 6749 token response. */
export interface TokenResponse {
  access_token: string
  token_type: string
  expires_in: number
  scope?: string
}

/** An RFC 9457 problem, as the management API answers errors. */
interface Problem {
  status?: number
  title?: string
  detail?: string
  errors?: Array<{ location: string, message: string }>
}

/** The one line an error answer becomes: the server's own words, status first. */
function describeFailure (status: number, body: unknown): string {
  const problem = body as Problem & { error?: string, error_description?: string } | undefined
  if (typeof problem?.error === 'string') return `${status} ${problem.error}: ${problem.error_description ?? ''}`.trim()
  if (typeof problem?.detail === 'string' || typeof problem?.title === 'string') {
    return `${status} ${problem.title ?? ''}: ${problem.detail ?? ''}`.replace(/: $/, '')
  }
  return `${status} ${typeof body === 'string' && body !== '' ? body.slice(0, 200) : 'unexpected answer'}`
}

/** A client of one AgentIdP server's HTTP API, authenticated as one agent. */
export class AgentIdpClient {
  #token: Promise<TokenResponse> | undefined

  constructor (readonly url: string, readonly clientId: string | undefined, readonly clientSecret: string | undefined) {}

  /** Settings from the flags, else AGENTIDP_URL, AGENTIDP_CLIENT_ID and AGENTIDP_CLIENT_SECRET. */
  static from (values: GlobalValues, env: NodeJS.ProcessEnv = process.env): AgentIdpClient {
    const url = values.url ?? env.AGENTIDP_URL ?? DEFAULT_URL
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new CliError(`--url / AGENTIDP_URL is not an http(s) URL: ${url}`, 2)
    return new AgentIdpClient(url.replace(/\/+$/, ''), values['client-id'] ?? env.AGENTIDP_CLIENT_ID, values['client-secret'] ?? env.AGENTIDP_CLIENT_SECRET)
  }

  /** fetch, with a refused connection or a bad host said in one line that names the URL. */
  async #fetch (path: string, init: RequestInit): Promise<{ status: number, body: unknown }> {
    let response: Response
    try {
      response = await fetch(`${this.url}${path}`, { ...init, redirect: 'manual' })
    } catch (error) {
      const cause = (error as { cause?: { code?: string, message?: string } }).cause
      throw new CliError(`cannot reach AgentIdP at ${this.url}: ${cause?.code ?? cause?.message ?? (error as Error).message} (is the server running? set --url or AGENTIDP_URL)`)
    }
    const text = await response.text()
    let body: unknown = text
    try { body = text === '' ? undefined : JSON.parse(text) } catch {}
    return { status: response.status, body }
  }

  /** An access token for the configured client (client_credentials, client_secret_basic), for the resources given. */
  async requestToken (scopes: string[] = [], resources: string[] = []): Promise<TokenResponse> {
    if (this.clientId === undefined || this.clientSecret === undefined) {
      throw new CliError('no client to authenticate as: set AGENTIDP_CLIENT_ID and AGENTIDP_CLIENT_SECRET (or --client-id and --client-secret)', 2)
    }
    // RFC 6749 §2.3.1: both halves form-encoded before they are joined.
    const basic = Buffer.from(`${encodeURIComponent(this.clientId)}:${encodeURIComponent(this.clientSecret)}`).toString('base64')
    const form = new URLSearchParams({ grant_type: 'client_credentials' })
    if (scopes.length > 0) form.set('scope', scopes.join(' '))
    for (const resource of resources) form.append('resource', resource)
    const { status, body } = await this.#fetch('/oauth2/token', {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString()
    })
    if (status !== 200) throw new CliError(`token request refused: ${describeFailure(status, body)}`)
    return body as TokenResponse
  }

  /** A management API call with this client's token; the parsed answer, or a CliError with the server's words. */
  async request<T> (method: string, path: string, body?: unknown): Promise<T> {
    this.#token ??= this.requestToken()
    const { access_token: token } = await this.#token
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const answer = await this.#fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    if (answer.status >= 400) throw new CliError(describeFailure(answer.status, answer.body))
    return answer.body as T
  }
}

/** A value as one table cell: - for none, lists space-separated, objects as compact JSON. */
export function cellText (value: unknown): string {
  if (value === null || value === undefined) return '-'
  if (Array.isArray(value)) return value.length === 0 ? '-' : value.join(' ')
  return typeof value === 'object' ? JSON.stringify(value) : String(value)
}

/** Writes rows as aligned columns under upper-case headings; an empty list says so. */
export function printTable (rows: readonly object[], columns: string[], empty = '(none)'): void {
  if (rows.length === 0) {
    console.log(empty)
    return
  }
  const cells = rows.map((row) => columns.map((column) => cellText((row as Record<string, unknown>)[column])))
  const widths = columns.map((column, index) => Math.max(column.length, ...cells.map((line) => (line[index] as string).length)))
  const line = (values: string[]): string => values.map((value, index) => value.padEnd(widths[index] as number)).join('  ').trimEnd()
  console.log(line(columns.map((column) => column.toUpperCase())))
  for (const values of cells) console.log(line(values))
}

/** Writes `key  value` lines, keys aligned: one record, for a person. */
export function printRecord (record: Record<string, unknown>): void {
  const width = Math.max(...Object.keys(record).map((key) => key.length))
  for (const [key, value] of Object.entries(record)) {
    console.log(`${key.padEnd(width)}  ${cellText(value)}`)
  }
}

/** Pretty JSON on stdout, for scripts (`--json`). */
export function printJson (value: unknown): void {
  console.log(JSON.stringify(value, null, 2))
}

/** A subcommand: its options (besides the global ones), its positional arguments, and what it does. */
export interface Command {
  name: string
  summary: string
  /** The usage line after `agentidp <group> <name>`. */
  usage: string
  /** Option lines for --help. */
  help?: string
  options?: NonNullable<ParseArgsConfig['options']>
  /** How many positional arguments it takes. */
  positionals: number
  run(context: CommandContext): Promise<void>
}

export interface CommandContext {
  client: AgentIdpClient
  values: Record<string, string | boolean | string[] | undefined> & GlobalValues
  positionals: string[]
}

/** Commands under one name (`agents`, `credentials`, …). A group with one unnamed command runs it directly. */
export interface CommandGroup {
  name: string
  summary: string
  commands: Command[]
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The agent id for an id or a client_id (what logs and audit events show), looked up through the API. */
export async function resolveAgentId (client: AgentIdpClient, reference: string): Promise<string> {
  if (UUID.test(reference)) return reference.toLowerCase()
  const page = await client.request<{ items: Array<{ id: string }> }>('GET', `/api/v1/agents?client_id=${encodeURIComponent(reference)}`)
  const agent = page.items[0]
  if (agent === undefined) throw new CliError(`no agent with the client_id ${reference}`)
  return agent.id
}
