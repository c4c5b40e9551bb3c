/** `agentidp credentials …`: issue, list and revoke an agent's client secrets; register federation trusts. */
import { readFileSync } from 'node:fs'
import { CliError, printJson, printRecord, printTable, resolveAgentId, type CommandGroup } from './client.js'

const CREDENTIAL_COLUMNS = ['id', 'type', 'created_at', 'expires_at', 'revoked_at', 'last_used_at']

/** A JSON object given on the command line (or in a file, for `--jwks-file`), or a usage error naming the option. */
function jsonObject (option: string, text: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new CliError(`--${option} must be a JSON object`, 2)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CliError(`--${option} must be a JSON object`, 2)
  return value as Record<string, unknown>
}

export const credentials: CommandGroup = {
  name: 'credentials',
  summary: "issue, list and revoke an agent's credentials, register federation trusts (scopes agents:read, agents:write)",
  commands: [
    {
      name: 'create',
      summary: 'issue a new client secret for the agent, printed once (the old ones keep working until revoked)',
      usage: '<agent id|client_id> [--expires-at RFC3339]',
      help: '  --expires-at TIME       when the secret stops working, e.g. 2030-01-01T00:00:00Z (default: never)',
      options: { 'expires-at': { type: 'string' } },
      positionals: 1,
      async run ({ client, values, positionals }) {
        const id = await resolveAgentId(client, positionals[0] as string)
        const body = values['expires-at'] === undefined ? {} : { expires_at: values['expires-at'] }
        const credential = await client.request<Record<string, unknown>>('POST', `/api/v1/agents/${id}/credentials`, body)
        if (values.json === true) {
          printJson(credential)
          return
        }
        printRecord(credential)
        console.log('\nThe client_secret is shown this once and cannot be recovered: store it now.')
      }
    },
    {
      name: 'trust',
      summary: 'register a federated credential: tokens of an external issuer with this subject stand for the agent (jwt-bearer grant)',
      usage: '<agent id|client_id> --issuer ISS --subject SUB [--audience AUD] [--claims JSON] [--jwks-uri URL | --jwks-file PATH] [--expires-at RFC3339]',
      help: `  --issuer ISS            the external token's iss, exactly (a Kubernetes cluster, https://token.actions.githubusercontent.com)
  --subject SUB           its sub, exactly (system:serviceaccount:prod:payments, repo:acme/api:ref:refs/heads/main)
  --audience AUD          what its aud must hold (default: this AgentIdP's issuer)
  --claims JSON           further claims that must match, e.g. '{"repository_id":"892341"}'
  --jwks-uri URL          where the issuer's keys are (default: its OIDC discovery)
  --jwks-file PATH        a file holding the issuer's public keys as a JWK Set (a SPIFFE trust bundle)
  --expires-at TIME       when the trust ends, e.g. 2030-01-01T00:00:00Z (default: never)`,
      options: {
        issuer: { type: 'string' },
        subject: { type: 'string' },
        audience: { type: 'string' },
        claims: { type: 'string' },
        'jwks-uri': { type: 'string' },
        'jwks-file': { type: 'string' },
        'expires-at': { type: 'string' }
      },
      positionals: 1,
      async run ({ client, values, positionals }) {
        if (typeof values.issuer !== 'string' || typeof values.subject !== 'string') throw new CliError('credentials trust needs --issuer and --subject', 2)
        const body: Record<string, unknown> = { type: 'federated', issuer: values.issuer, subject: values.subject }
        if (typeof values.audience === 'string') body.audience = values.audience
        if (typeof values.claims === 'string') body.claims = jsonObject('claims', values.claims)
        if (typeof values['jwks-uri'] === 'string') body.jwks_uri = values['jwks-uri']
        if (typeof values['jwks-file'] === 'string') body.jwks = jsonObject('jwks-file', readFileSync(values['jwks-file'], 'utf8'))
        if (typeof values['expires-at'] === 'string') body.expires_at = values['expires-at']
        const id = await resolveAgentId(client, positionals[0] as string)
        const credential = await client.request<Record<string, unknown>>('POST', `/api/v1/agents/${id}/credentials`, body)
        if (values.json === true) printJson(credential)
        else printRecord(credential)
      }
    },
    {
      name: 'list',
      summary: "list the agent's credentials (never a secret)",
      usage: '<agent id|client_id>',
      positionals: 1,
      async run ({ client, values, positionals }) {
        const id = await resolveAgentId(client, positionals[0] as string)
        const { items } = await client.request<{ items: Array<Record<string, unknown>> }>('GET', `/api/v1/agents/${id}/credentials`)
        if (values.json === true) printJson(items)
        else printTable(items, CREDENTIAL_COLUMNS, 'no credentials')
      }
    },
    {
      name: 'revoke',
      summary: 'revoke one credential: the secret stops working and tokens issued with it end',
      usage: '<agent id|client_id> <credential id>',
      positionals: 2,
      async run ({ client, values, positionals }) {
        const [agent, credentialId] = positionals as [string, string]
        const id = await resolveAgentId(client, agent)
        await client.request('DELETE', `/api/v1/agents/${id}/credentials/${encodeURIComponent(credentialId)}`)
        if (values.json === true) printJson({ revoked: credentialId })
        else console.log(`revoked ${credentialId}`)
      }
    }
  ]
}
