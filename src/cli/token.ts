/** `agentidp token`: an access token for the configured client, for curl and for trying a resource server. */
import { printJson, type CommandGroup } from './client.js'

export const token: CommandGroup = {
  name: 'token',
  summary: 'print an access token for the configured client (client_credentials)',
  commands: [{
    name: '',
    summary: 'print an access token for the configured client (client_credentials)',
    usage: '[--scope SCOPE]... [--resource URI]... [--json]',
    help: `  --scope SCOPE           ask for this scope only; repeat for more (default: every scope the agent holds)
  --resource URI          the resource server the token is for (RFC 8707): its aud; repeat for more
  --json                  the whole token response, not just the token`,
    options: { scope: { type: 'string', multiple: true }, resource: { type: 'string', multiple: true } },
    positionals: 0,
    async run ({ client, values }) {
      const response = await client.requestToken((values.scope as string[] | undefined) ?? [], (values.resource as string[] | undefined) ?? [])
      if (values.json === true) printJson(response)
      else console.log(response.access_token)
    }
  }]
}
