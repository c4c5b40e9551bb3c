import { InvalidScope, InvalidTarget } from '../../../src/errors.js'
import { parseScope, SCOPE_TOKEN } from '../../../src/scopes.js'

/** What every grant that issues a token for an agent decides the same way: its scopes and its audience. */

/**
 * RFC 8707 §2: each resource is an absolute URI without a fragment, and one the client may name: the default
 * audience or one of the agent's resources, matched exactly. None given: the default audience.
 */
export function audienceOf (resource: string | string[] | undefined, allowed: string[], fallback: string): string | string[] {
  if (resource === undefined) return fallback
  const resources = [...new Set(Array.isArray(resource) ? resource : [resource])]
  for (const value of resources) {
    let url: URL | undefined
    try { url = new URL(value) } catch {}
    if (url === undefined || value.includes('#')) throw new InvalidTarget(`resource must be an absolute URI without a fragment: ${value.slice(0, 200)}`)
    if (value !== fallback && !allowed.includes(value)) throw new InvalidTarget(`not a resource this client may ask for: ${value.slice(0, 200)}`)
  }
  return resources.length === 1 ? resources[0] as string : resources
}

/**
 * The scopes granted: those asked for (each one the agent may hold), or every scope the agent may hold when the
 * parameter is absent (`scope=` is absent: RFC 6749 §3.2). A value that holds no scope-token (only spaces) is
 * invalid_scope: RFC 6749 §3.3 makes scope one or more scope-tokens.
 */
export function grantedScopes (requested: string | undefined, allowed: string[]): string[] {
  if (requested === undefined) return allowed
  const scopes = parseScope(requested)
  if (scopes.length === 0) throw new InvalidScope('scope names no scope-token (RFC 6749 §3.3); omit it to ask for every scope the client may hold')
  const malformed = scopes.filter((scope) => !SCOPE_TOKEN.test(scope))
  if (malformed.length > 0) throw new InvalidScope('scope holds characters RFC 6749 §3.3 does not allow')
  const outside = scopes.filter((scope) => !allowed.includes(scope))
  if (outside.length > 0) throw new InvalidScope(`not allowed for this client: ${outside.join(' ').slice(0, 300)}`)
  return scopes
}
