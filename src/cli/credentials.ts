/** `agentidp credentials …`: issue, list and revoke an agent's client secrets. */
import { printJson, printRecord, printTable, resolveAgentId, type CommandGroup } from './client.js'

const CREDENTIAL_COLUMNS = ['id', 'created_at', 'expires_at', 'revoked_at', 'last_used_at']

export const credentials: CommandGroup = {
  name: 'credentials',
  summary: "issue, list and revoke an agent's client secrets (scopes agents:read, agents:write)",
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
