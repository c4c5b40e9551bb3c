import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'

/** One request a receiver got. */
export interface Received {
  headers: IncomingHttpHeaders
  body: string
  json: { type: string, timestamp: string, data: Record<string, any>, event?: { id: string, seq: string, agent_id: string | null, actor: string } }
  at: number
}

/** What the receiver answers a request with: a status and headers, or 'hang' (never answers). */
export type Answer = { status: number, headers?: Record<string, string> } | 'hang'

/**
 * A real webhook receiver on 127.0.0.1: records every request and answers from `answers` (first come first
 * served), then with `otherwise`. Verifies nothing itself: tests verify with the standardwebhooks package.
 */
export class Receiver {
  readonly received: Received[] = []
  answers: Answer[] = []
  otherwise: Answer = { status: 204 }
  #server: Server
  #hanging: ServerResponse[] = []
  url = ''

  private constructor () {
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        this.received.push({ headers: request.headers, body, json: JSON.parse(body), at: Date.now() })
        const answer = this.answers.shift() ?? this.otherwise
        if (answer === 'hang') { this.#hanging.push(response); return }
        response.writeHead(answer.status, answer.headers).end('ok')
      })
    })
  }

  static async start (): Promise<Receiver> {
    const receiver = new Receiver()
    await new Promise<void>((resolve) => receiver.#server.listen(0, '127.0.0.1', resolve))
    receiver.url = `http://127.0.0.1:${(receiver.#server.address() as AddressInfo).port}/hook`
    return receiver
  }

  /** Waits until `predicate` holds of what was received (polling), or fails after timeoutMs. */
  async until (predicate: (received: Received[]) => boolean, timeoutMs = 15_000): Promise<Received[]> {
    const started = Date.now()
    while (!predicate(this.received)) {
      if (Date.now() - started > timeoutMs) throw new Error(`receiver: condition not met within ${timeoutMs} ms; got ${this.received.length} requests: ${this.received.map((r) => r.json.type).join(', ')}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    return this.received
  }

  async close (): Promise<void> {
    for (const response of this.#hanging) response.destroy()
    this.#server.closeAllConnections()
    await new Promise((resolve) => this.#server.close(resolve))
  }
}

/** Verifies a request as a receiver would, with the standardwebhooks package, unmodified; throws when it does not verify. */
export function verify (secret: string, received: Received): unknown {
  return new Webhook(secret).verify(received.body, received.headers as Record<string, string>)
}

/** Polls `check` until it returns a value that is not undefined, or fails after timeoutMs. */
export async function eventually<T> (check: () => Promise<T | undefined>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const started = Date.now()
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}
