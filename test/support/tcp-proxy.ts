import { createServer, connect, type Server, type Socket } from 'node:net'

/**
 * A TCP proxy the test controls, in front of PostgreSQL (or anything): `cut()` drops every connection and
 * refuses new ones, as a server that went away would; `restore()` lets traffic through again;
 * `resetWhenClientSends()` resets one connection at a chosen moment of its conversation.
 */
export class TcpProxy {
  #server: Server | undefined
  readonly #sockets = new Set<Socket>()
  #up = true
  #resetOn: Buffer | undefined
  port = 0

  constructor (private readonly targetHost: string, private readonly targetPort: number) {}

  static async start (targetUrl: string): Promise<TcpProxy> {
    const url = new URL(targetUrl)
    const proxy = new TcpProxy(url.hostname, Number(url.port || 5432))
    await proxy.#listen()
    return proxy
  }

  /** The target URL with host and port swapped for the proxy's. */
  through (targetUrl: string): string {
    const url = new URL(targetUrl)
    url.hostname = '127.0.0.1'
    url.port = String(this.port)
    return url.toString()
  }

  async #listen (): Promise<void> {
    this.#server = createServer((client) => {
      if (!this.#up) {
        client.destroy()
        return
      }
      const upstream = connect(this.targetPort, this.targetHost)
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
        socket.on('error', () => { client.destroy(); upstream.destroy() })
      }
      upstream.pipe(client)
      client.on('data', (chunk: Buffer) => {
        if (this.#resetOn !== undefined && chunk.includes(this.#resetOn)) {
          this.#resetOn = undefined
          // A TCP RST, as a dying server or a load balancer sends: the client reads ECONNRESET.
          client.resetAndDestroy()
          upstream.destroy()
          return
        }
        if (!upstream.write(chunk)) {
          client.pause()
          upstream.once('drain', () => client.resume())
        }
      })
      client.on('end', () => upstream.end())
    })
    await new Promise<void>((resolve) => this.#server?.listen(this.port, '127.0.0.1', resolve))
    const address = this.#server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : 0
  }

  /** The next time a client sends bytes holding `text`, its connection is reset instead of forwarding them (once). */
  resetWhenClientSends (text: string): void {
    this.#resetOn = Buffer.from(text)
  }

  cut (): void {
    this.#up = false
    for (const socket of this.#sockets) socket.destroy()
  }

  restore (): void {
    this.#up = true
  }

  async close (): Promise<void> {
    this.cut()
    await new Promise((resolve) => this.#server?.close(resolve))
  }
}
