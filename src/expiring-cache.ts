/**
 * An in-process map of at most `maxEntries`, each entry living until its own expiry: the oldest entry goes first
 * when full. For what a request may answer from memory (verified client secrets, verified access tokens); never
 * for revocation state, which every replica must see at once.
 */
export class ExpiringCache<V> {
  readonly #entries = new Map<string, { value: V, expiresAtMs: number }>()

  constructor (private readonly maxEntries: number) {}

  get (key: string): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAtMs <= Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.value
  }

  set (key: string, value: V, expiresAtMs: number): void {
    this.#entries.delete(key)
    if (this.#entries.size >= this.maxEntries) this.#entries.delete(this.#entries.keys().next().value as string)
    this.#entries.set(key, { value, expiresAtMs })
  }

  delete (key: string): void {
    this.#entries.delete(key)
  }
}
