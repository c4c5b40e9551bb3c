/** The `agentidp` command line, apart from its entry (index.ts), so tests run it in-process. */
import { parseArgs } from 'node:util'
import { agents } from './agents.js'
import { audit } from './audit.js'
import { AgentIdpClient, CliError, GLOBAL_HELP, GLOBAL_OPTIONS, type Command, type CommandGroup } from './client.js'
import { credentials } from './credentials.js'
import { token } from './token.js'

/** Every command group, in the order --help lists them. */
export const GROUPS: CommandGroup[] = [agents, credentials, token, audit]

function overview (): string {
  const width = Math.max(...GROUPS.map((group) => group.name.length))
  return `Usage: agentidp <command> [options]

Commands:
${GROUPS.map((group) => `  ${group.name.padEnd(width)}  ${group.summary}`).join('\n')}

Run agentidp <command> --help for its subcommands and options.

${GLOBAL_HELP}`
}

function groupHelp (group: CommandGroup): string {
  const width = Math.max(...group.commands.map((command) => command.name.length))
  return `Usage: agentidp ${group.name} <subcommand> [options]

${group.summary}

Subcommands:
${group.commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`).join('\n')}

Run agentidp ${group.name} <subcommand> --help for its options.`
}

function commandHelp (group: CommandGroup, command: Command): string {
  const name = command.name === '' ? group.name : `${group.name} ${command.name}`
  return `Usage: agentidp ${name} ${command.usage}

${command.summary}
${command.help === undefined ? '' : `\n${command.help}\n`}
${GLOBAL_HELP}`
}

async function dispatch (argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [groupName, ...rest] = argv
  if (groupName === undefined || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    console.log(overview())
    return groupName === undefined ? 2 : 0
  }
  const group = GROUPS.find((candidate) => candidate.name === groupName)
  if (group === undefined) throw new CliError(`unknown command ${groupName} (agentidp --help lists them)`, 2)
  const direct = group.commands.length === 1 && group.commands[0]?.name === ''
  const commandName = direct ? '' : rest.shift()
  if (!direct && (commandName === undefined || commandName === '--help' || commandName === '-h')) {
    console.log(groupHelp(group))
    return commandName === undefined ? 2 : 0
  }
  const command = group.commands.find((candidate) => candidate.name === commandName)
  if (command === undefined) throw new CliError(`unknown subcommand ${group.name} ${commandName as string} (agentidp ${group.name} --help lists them)`, 2)

  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...command.options }, allowPositionals: true, strict: true })
  } catch (error) {
    throw new CliError(`${(error as Error).message.split(/\. To specify|\n/)[0] as string} (agentidp ${`${group.name} ${command.name}`.trim()} --help)`, 2)
  }
  const values = parsed.values as Parameters<Command['run']>[0]['values']
  if (values.help === true) {
    console.log(commandHelp(group, command))
    return 0
  }
  if (parsed.positionals.length !== command.positionals) {
    throw new CliError(`usage: agentidp ${`${group.name} ${command.name}`.trim()} ${command.usage}`, 2)
  }
  await command.run({ client: AgentIdpClient.from(values, env), values, positionals: parsed.positionals })
  return 0
}

/**
 * Runs one command line against the server `env` points to and returns the exit code: 0, 1 when it failed, 2 for a
 * usage error. Output goes to stdout; a failure is one line on stderr, the server's words for a refusal.
 */
export async function runCli (argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    return await dispatch(argv, env)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    console.error(`agentidp: ${message.replace(/\s*\n\s*/g, ' ')}`)
    return error instanceof CliError ? error.exitCode : 1
  }
}
