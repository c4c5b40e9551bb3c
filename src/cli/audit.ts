/** `agentidp audit tail`: the latest audit events, oldest first, and with --follow each new one as it is recorded. */
import { setTimeout as sleep } from 'node:timers/promises'
import { cellText, CliError, printTable, type AgentIdpClient, type CommandGroup } from './client.js'

interface AuditEvent {
  seq: number
  occurred_at: string
  type: string
  actor: string
  agent_id: string | null
  data: Record<string, unknown>
}

interface AuditPage {
  items: AuditEvent[]
  next_cursor: string | null
}

const EVENT_COLUMNS = ['seq', 'occurred_at', 'type', 'actor', 'agent_id', 'data']
// The API's largest page.
const PAGE_SIZE = 500
const FOLLOW_INTERVAL_MS = 2000

/** Events newer than `afterSeq` (all of them, page after page), oldest first. */
async function eventsAfter (client: AgentIdpClient, filter: URLSearchParams, afterSeq: number): Promise<AuditEvent[]> {
  const events: AuditEvent[] = []
  let cursor: string | null = null
  do {
    const query = new URLSearchParams(filter)
    query.set('limit', String(PAGE_SIZE))
    if (cursor !== null) query.set('cursor', cursor)
    const page: AuditPage = await client.request('GET', `/api/v1/audit-events?${query.toString()}`)
    const newer = page.items.filter((event) => event.seq > afterSeq)
    events.push(...newer)
    cursor = newer.length === page.items.length ? page.next_cursor : null
  } while (cursor !== null)
  return events.reverse()
}

export const audit: CommandGroup = {
  name: 'audit',
  summary: 'read the audit trail (scope audit:read)',
  commands: [{
    name: 'tail',
    summary: 'show the latest events, oldest first; --follow keeps printing new ones until interrupted',
    usage: '[--type TYPE]... [--agent AGENT_ID] [--limit N] [--follow]',
    help: `  --type TYPE             only events of this type (agent.created, token.issued, auth.failed, …); repeat for more
  --agent AGENT_ID        only events about this agent
  --limit N               how many of the latest events to show first (default 20, at most 500)
  --follow, -f            then poll every 2 s and print each new event
  --json                  one JSON object per line`,
    options: {
      type: { type: 'string', multiple: true },
      agent: { type: 'string' },
      limit: { type: 'string' },
      follow: { type: 'boolean', short: 'f' }
    },
    positionals: 0,
    async run ({ client, values }) {
      const limit = values.limit === undefined ? 20 : Number(values.limit)
      if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_SIZE) throw new CliError(`--limit must be a whole number from 1 to ${PAGE_SIZE}, got ${String(values.limit)}`, 2)
      const filter = new URLSearchParams()
      for (const type of (values.type as string[] | undefined) ?? []) filter.append('type', type)
      if (typeof values.agent === 'string') filter.set('agent_id', values.agent)
      const json = values.json === true
      const show = (events: AuditEvent[], header: boolean): void => {
        if (json) for (const event of events) console.log(JSON.stringify(event))
        else if (header) printTable(events, EVENT_COLUMNS, values.follow === true ? '(no events yet; waiting)' : 'no events')
        else for (const event of events) console.log(EVENT_COLUMNS.map((column) => cellText(event[column as keyof AuditEvent])).join('  '))
      }
      const first = new URLSearchParams(filter)
      first.set('limit', String(limit))
      const latest = (await client.request<AuditPage>('GET', `/api/v1/audit-events?${first.toString()}`)).items.reverse()
      show(latest, true)
      if (values.follow !== true) return
      let lastSeq = latest.at(-1)?.seq ?? 0
      // Interrupted (Ctrl-C) or terminated: stop between polls and exit 0, as tail -f does.
      const abort = new AbortController()
      const stop = (): void => { abort.abort() }
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
      while (!abort.signal.aborted) {
        await sleep(FOLLOW_INTERVAL_MS, undefined, { signal: abort.signal }).catch(() => {})
        if (abort.signal.aborted) break
        const events = await eventsAfter(client, filter, lastSeq)
        show(events, false)
        lastSeq = events.at(-1)?.seq ?? lastSeq
      }
    }
  }]
}
