/** `agentidp agents …`: register, list, show, suspend, reactivate and decommission agents. */
import { CliError, printJson, printRecord, printTable, resolveAgentId, type CommandContext, type CommandGroup } from './client.js'

interface Agent {
  id: string
  client_id: string
  name: string
  owner: string | null
  scopes: string[]
  resources: string[]
  status: string
  [member: string]: unknown
}

interface IssuedCredential {
  id: string
  client_id: string
  client_secret: string
  expires_at: string | null
}

const AGENT_COLUMNS = ['id', 'client_id', 'name', 'status', 'owner', 'scopes']
// The API's largest page.
const PAGE_SIZE = 100

function showAgent (context: CommandContext, agent: Agent): void {
  if (context.values.json === true) printJson(agent)
  else printRecord(agent)
}

/** PATCHes the status of the agent named by the one positional argument, and shows the result. */
function statusChange (status: 'active' | 'suspended') {
  return async (context: CommandContext): Promise<void> => {
    const id = await resolveAgentId(context.client, context.positionals[0] as string)
    showAgent(context, await context.client.request<Agent>('PATCH', `/api/v1/agents/${id}`, { status }))
  }
}

export const agents: CommandGroup = {
  name: 'agents',
  summary: 'register and manage agents (scopes agents:read, agents:write)',
  commands: [
    {
      name: 'create',
      summary: 'register an agent and issue its first client secret, printed once',
      usage: '--name NAME [--scope SCOPE]... [--owner OWNER] [--description TEXT] [--resource URI]...',
      help: `  --name NAME             a human-readable name (required)
  --scope SCOPE           a scope the agent may be granted; repeat for more
  --owner OWNER           who is responsible for it
  --description TEXT      free text
  --resource URI          a resource server (RFC 8707) its tokens may be issued for; repeat for more`,
      options: {
        name: { type: 'string' },
        scope: { type: 'string', multiple: true },
        owner: { type: 'string' },
        description: { type: 'string' },
        resource: { type: 'string', multiple: true }
      },
      positionals: 0,
      async run (context) {
        const { values, client } = context
        if (typeof values.name !== 'string') throw new CliError('agents create needs --name', 2)
        const body: Record<string, unknown> = { name: values.name }
        if (values.scope !== undefined) body.scopes = values.scope
        if (values.owner !== undefined) body.owner = values.owner
        if (values.description !== undefined) body.description = values.description
        if (values.resource !== undefined) body.resources = values.resource
        const agent = await client.request<Agent>('POST', '/api/v1/agents', body)
        let credential: IssuedCredential
        try {
          credential = await client.request<IssuedCredential>('POST', `/api/v1/agents/${agent.id}/credentials`, {})
        } catch (error) {
          throw new CliError(`agent ${agent.client_id} (${agent.id}) was registered, but its secret was not issued (${(error as Error).message}): run agentidp credentials create ${agent.client_id}`)
        }
        if (values.json === true) {
          printJson({ agent, credential })
          return
        }
        printRecord({ id: agent.id, client_id: agent.client_id, client_secret: credential.client_secret, scopes: agent.scopes, ...(agent.resources.length === 0 ? {} : { resources: agent.resources }) })
        console.log('\nThe client_secret is shown this once and cannot be recovered: store it now.')
      }
    },
    {
      name: 'list',
      summary: 'list agents, oldest first',
      usage: '[--status active|suspended|decommissioned] [--owner OWNER] [--limit N]',
      help: `  --status STATUS         only agents in this status
  --owner OWNER           only agents of this owner
  --limit N               at most N agents (default 100)`,
      options: { status: { type: 'string' }, owner: { type: 'string' }, limit: { type: 'string' } },
      positionals: 0,
      async run ({ client, values }) {
        const limit = values.limit === undefined ? 100 : Number(values.limit)
        if (!Number.isInteger(limit) || limit < 1) throw new CliError(`--limit must be a whole number of 1 or more, got ${String(values.limit)}`, 2)
        const items: Agent[] = []
        let cursor: string | null = null
        do {
          const query = new URLSearchParams({ limit: String(Math.min(PAGE_SIZE, limit - items.length)) })
          if (typeof values.status === 'string') query.set('status', values.status)
          if (typeof values.owner === 'string') query.set('owner', values.owner)
          if (cursor !== null) query.set('cursor', cursor)
          const page: { items: Agent[], next_cursor: string | null } = await client.request('GET', `/api/v1/agents?${query.toString()}`)
          items.push(...page.items)
          cursor = page.next_cursor
        } while (cursor !== null && items.length < limit)
        if (values.json === true) printJson(items)
        else printTable(items, AGENT_COLUMNS, 'no agents')
      }
    },
    {
      name: 'get',
      summary: 'show one agent',
      usage: '<id|client_id>',
      positionals: 1,
      async run (context) {
        const id = await resolveAgentId(context.client, context.positionals[0] as string)
        showAgent(context, await context.client.request<Agent>('GET', `/api/v1/agents/${id}`))
      }
    },
    {
      name: 'suspend',
      summary: 'refuse the agent new tokens, and end the ones it holds, until it is reactivated',
      usage: '<id|client_id>',
      positionals: 1,
      run: statusChange('suspended')
    },
    {
      name: 'reactivate',
      summary: 'let a suspended agent obtain tokens again',
      usage: '<id|client_id>',
      positionals: 1,
      run: statusChange('active')
    },
    {
      name: 'decommission',
      summary: 'retire the agent for good: every credential revoked, the record kept',
      usage: '<id|client_id>',
      positionals: 1,
      async run (context) {
        const id = await resolveAgentId(context.client, context.positionals[0] as string)
        await context.client.request('DELETE', `/api/v1/agents/${id}`)
        showAgent(context, await context.client.request<Agent>('GET', `/api/v1/agents/${id}`))
      }
    }
  ]
}
