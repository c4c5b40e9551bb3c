import { isDeepStrictEqual } from 'node:util'
import { badMember } from '../../../src/errors.js'
import { checkOutboundUrl, OutboundRefused } from '../../../src/outbound.js'
import type { CreateCredentialBody, PublicJwkSet } from '../../../schemas/credentials.js'
import { publicJwkOf } from './jwk.js'

/** The trust rule of a federated credential (sql/0014): which external tokens stand for its agent. */
export interface FederationRule {
  issuer: string
  subject: string
  /** What the token's aud must hold; null: the issuer the request spoke to. */
  audience: string | null
  claims: Record<string, unknown>
  /** The issuer's keys given inline (a SPIFFE trust bundle); then nothing is fetched. */
  jwks: PublicJwkSet | null
  /** Else where its keys are fetched from; null: the jwks_uri of its OIDC discovery. */
  jwks_uri: string | null
}

// A trust names a few claims (repository_id, a service-account uid) and a trust bundle a few keys (rotation).
const MAX_CLAIMS = 16
const MAX_KEYS = 16
// Registered claims are checked by the grant itself; a rule may not restate (or contradict) them.
const CHECKED_CLAIMS = new Set(['iss', 'sub', 'aud', 'exp', 'nbf', 'iat', 'jti'])
const FEDERATED_MEMBERS = ['issuer', 'subject', 'audience', 'claims', 'jwks', 'jwks_uri'] as const

const invalid = badMember

/** Refuses the members of a federated credential on a body of another type. */
export function refuseFederatedMembers (body: CreateCredentialBody | undefined, type: string): void {
  for (const member of FEDERATED_MEMBERS) {
    if (body?.[member] !== undefined) throw invalid(member, `only with type federated, not ${type}`)
  }
}

/** An http(s) URL this server may fetch from under the outbound rules (src/outbound.ts), or a 400 naming `member`. */
function fetchableUrl (member: string, value: string, allowPrivateNetworks: boolean): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw invalid(member, 'must be an absolute https URL')
  }
  try {
    checkOutboundUrl(url, allowPrivateNetworks)
  } catch (error) {
    if (error instanceof OutboundRefused) throw invalid(member, error.message)
    throw error
  }
  if (url.hash !== '') throw invalid(member, 'must not carry a fragment')
  return value
}

async function jwksOf (given: Record<string, unknown>): Promise<PublicJwkSet> {
  const keys = given.keys
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > MAX_KEYS) throw invalid('jwks', `must be a JWK Set: {"keys": [1 to ${MAX_KEYS} public keys]}`)
  const published = []
  for (const key of keys) {
    if (key === null || typeof key !== 'object' || Array.isArray(key)) throw invalid('jwks', 'every member of keys must be a JWK')
    try {
      published.push((await publicJwkOf(key as Record<string, unknown>)).jwk)
    } catch (error) {
      throw invalid('jwks', (error as Error).message.replace(/^jwk: /, ''))
    }
  }
  return { keys: published }
}

/**
 * The trust rule a registration of type federated presents. issuer and subject are required and kept verbatim
 * (matched exactly); keys come from `jwks`, else `jwks_uri`, else the issuer's discovery, so without `jwks` the URL
 * that will be fetched must be one the outbound rules allow: a 400 now, not a failed exchange later.
 */
export async function federationRuleOf (body: CreateCredentialBody, allowPrivateNetworks: boolean): Promise<FederationRule> {
  if (body.issuer === undefined) throw invalid('issuer', 'required with type federated')
  if (body.subject === undefined) throw invalid('subject', 'required with type federated')
  const claims = body.claims ?? {}
  const names = Object.keys(claims)
  if (names.length > MAX_CLAIMS) throw invalid('claims', `at most ${MAX_CLAIMS} claims`)
  const checked = names.filter((name) => CHECKED_CLAIMS.has(name))
  if (checked.length > 0) throw invalid('claims', `${checked.join(', ')} ${checked.length === 1 ? 'is' : 'are'} checked by the grant itself: use issuer, subject and audience`)
  if (body.jwks !== undefined && body.jwks_uri !== undefined) throw invalid('jwks_uri', 'give jwks or jwks_uri, not both')
  const jwks = body.jwks === undefined ? null : await jwksOf(body.jwks as Record<string, unknown>)
  const jwksUri = body.jwks_uri === undefined ? null : fetchableUrl('jwks_uri', body.jwks_uri, allowPrivateNetworks)
  // Discovery is fetched from the issuer: it must be a URL the rules allow.
  if (jwks === null && jwksUri === null) fetchableUrl('issuer', body.issuer, allowPrivateNetworks)
  return { issuer: body.issuer, subject: body.subject, audience: body.audience ?? null, claims, jwks, jwks_uri: jwksUri }
}

/**
 * Whether a token's claim satisfies what a rule requires: an object member by member (the token may carry more
 * members), anything else exactly (no prefix, no pattern, no type coercion).
 */
export function claimMatches (required: unknown, actual: unknown): boolean {
  if (required !== null && typeof required === 'object' && !Array.isArray(required)) {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false
    return Object.entries(required).every(([name, value]) => Object.hasOwn(actual, name) && claimMatches(value, (actual as Record<string, unknown>)[name]))
  }
  return isDeepStrictEqual(required, actual)
}

/** Whether every claim the rule requires is satisfied by the token's claims. */
export function claimsMatch (required: Record<string, unknown>, payload: Record<string, unknown>): boolean {
  return Object.entries(required).every(([name, value]) => Object.hasOwn(payload, name) && claimMatches(value, payload[name]))
}
