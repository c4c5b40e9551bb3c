import { createLocalJWKSet, createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose'
import { OutboundRefused, outboundRequest } from '../../../src/outbound.js'
import type { FederationRule } from '../credentials/federated.js'

/** Why an issuer's keys could not be had: its discovery or key set could not be fetched or read. */
export class KeySetUnavailable extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'KeySetUnavailable'
  }
}

export interface KeySetOptions {
  /** http and private addresses allowed (FEDERATION_ALLOW_PRIVATE_NETWORKS). */
  allowPrivateNetworks: boolean
  /**
   * After a fetch, how long a token naming an unknown kid is refused without fetching again; after a failed one,
   * how long the issuer's keys are not asked for at all. A flood of made-up kids costs one fetch a cooldown.
   */
  cooldownMs: number
  /** How long fetched keys are used before they are fetched again. */
  maxAgeMs: number
  timeoutMs: number
  maxResponseBytes: number
  /** Remote key sets kept; the oldest is forgotten first. Trusts are registered by admins: a few per issuer. */
  maxEntries: number
}

// jose's codes for a key set that was fetched and read, but holds no key (or no usable one) for this token's header.
const ANSWERS_OF_FETCHED_KEYS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'ERR_JOSE_NOT_SUPPORTED', 'ERR_JOSE_ALG_NOT_ALLOWED'])

/** One remote key set: from a jwks_uri, or from the jwks_uri the issuer's discovery names. */
interface RemoteKeySet {
  getKey?: JWTVerifyGetKey
  pending?: Promise<JWTVerifyGetKey>
  failedAtMs?: number
  failure?: string
}

/**
 * The keys federated tokens are verified with, by the source a trust names: `jwks` given inline (nothing fetched),
 * else one cached remote key set per `jwks_uri`, else per issuer through its OIDC discovery. Only what the trust
 * names is fetched: a token's jku, x5u or x5c are never followed (jose's key sets read kid, alg and kty only).
 * Every fetch goes through src/outbound.ts (https, public addresses checked at connect time, no redirects, time and
 * size caps).
 */
export class FederationKeySets {
  readonly #remote = new Map<string, RemoteKeySet>()
  readonly #options: KeySetOptions

  constructor (options: KeySetOptions) {
    this.#options = options
  }

  /** The key set a trust's tokens verify against. */
  keysOf (rule: Pick<FederationRule, 'issuer' | 'jwks' | 'jwks_uri'>): JWTVerifyGetKey {
    if (rule.jwks !== null) return createLocalJWKSet(rule.jwks as never)
    const sourceKey = rule.jwks_uri !== null ? `uri ${rule.jwks_uri}` : `discovery ${rule.issuer}`
    return async (header, token) => {
      const getKey = await this.#remoteKeySet(sourceKey, rule)
      return await getKey(header, token)
    }
  }

  /** The remote key set of a source: made once, its discovery (if any) fetched once, a failure remembered for a cooldown. */
  async #remoteKeySet (sourceKey: string, rule: Pick<FederationRule, 'issuer' | 'jwks_uri'>): Promise<JWTVerifyGetKey> {
    let entry = this.#remote.get(sourceKey)
    if (entry === undefined) {
      if (this.#remote.size >= this.#options.maxEntries) this.#remote.delete(this.#remote.keys().next().value as string)
      entry = {}
      this.#remote.set(sourceKey, entry)
    }
    if (entry.failedAtMs !== undefined && Date.now() - entry.failedAtMs < this.#options.cooldownMs) {
      throw new KeySetUnavailable(entry.failure ?? 'the issuer\'s keys could not be fetched')
    }
    const known = entry
    if (known.getKey !== undefined) return this.#guarded(known)
    known.pending ??= (async () => {
      const jwksUri = rule.jwks_uri ?? await this.#discoveredJwksUri(rule.issuer)
      return createRemoteJWKSet(new URL(jwksUri), {
        cooldownDuration: this.#options.cooldownMs,
        cacheMaxAge: this.#options.maxAgeMs,
        timeoutDuration: this.#options.timeoutMs,
        [customFetch]: async (url: string) => await this.#fetch(url, 'application/jwk-set+json, application/json')
      })
    })()
    try {
      known.getKey = await known.pending
      return this.#guarded(known)
    } catch (error) {
      this.#failed(known, error)
      throw new KeySetUnavailable(known.failure as string)
    } finally {
      known.pending = undefined
    }
  }

  /** The remote key set, remembering a failed fetch so that the next cooldown asks nothing of the issuer. */
  #guarded (entry: RemoteKeySet): JWTVerifyGetKey {
    const getKey = entry.getKey as JWTVerifyGetKey
    return async (header, token) => {
      try {
        return await getKey(header, token)
      } catch (error) {
        // What a token's header makes of keys fetched fine is no failure of the issuer: were it remembered as one,
        // a forged header could keep the issuer's genuine tokens refused. Anything else means the fetch failed.
        if (ANSWERS_OF_FETCHED_KEYS.has((error as { code?: string }).code ?? '')) throw error
        this.#failed(entry, error)
        throw new KeySetUnavailable(entry.failure as string)
      }
    }
  }

  #failed (entry: RemoteKeySet, error: unknown): void {
    entry.failedAtMs = Date.now()
    entry.failure = error instanceof OutboundRefused
      ? `the issuer's keys may not be fetched: ${error.message}`
      : error instanceof KeySetUnavailable ? error.message : 'the issuer\'s keys could not be fetched'
  }

  /** OpenID Connect Discovery 1.0 §4: the jwks_uri of an issuer whose metadata names it as issuer. */
  async #discoveredJwksUri (issuer: string): Promise<string> {
    const response = await this.#fetch(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`, 'application/json')
    if (response.status !== 200) throw new KeySetUnavailable(`the issuer's discovery answered ${response.status}`)
    let metadata: { issuer?: unknown, jwks_uri?: unknown }
    try {
      metadata = await response.json() as typeof metadata
    } catch {
      throw new KeySetUnavailable('the issuer\'s discovery is not JSON')
    }
    // §4.3: the issuer in the metadata must be the one it was fetched for, or its keys may be another's.
    if (metadata.issuer !== issuer) throw new KeySetUnavailable('the issuer\'s discovery names another issuer')
    if (typeof metadata.jwks_uri !== 'string') throw new KeySetUnavailable('the issuer\'s discovery names no jwks_uri')
    return metadata.jwks_uri
  }

  /** A GET under the outbound rules, as a fetch Response (what jose's remote key set reads). */
  async #fetch (url: string, accept: string): Promise<Response> {
    const answer = await outboundRequest(url, {
      headers: { accept },
      timeoutMs: this.#options.timeoutMs,
      maxResponseBytes: this.#options.maxResponseBytes,
      allowPrivateNetworks: this.#options.allowPrivateNetworks
    })
    if (answer.truncated) throw new KeySetUnavailable(`the issuer's answer is larger than ${this.#options.maxResponseBytes} bytes`)
    // Anything but 200 is a failure to read keys from (redirects are never followed); a Response takes 200–599 only.
    if (answer.status !== 200) return new Response(null, { status: answer.status >= 300 && answer.status <= 599 ? answer.status : 502 })
    return new Response(new Uint8Array(answer.body), { status: 200, headers: { 'content-type': 'application/json' } })
  }
}
