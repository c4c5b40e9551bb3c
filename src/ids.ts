import { v7 } from 'uuid'

/**
 * A new UUIDv7: unique, and ordered by creation time (its first 48 bits are the Unix time in ms). Agents,
 * credentials and token jtis use it, so id order is creation order and a jti carries its issue time.
 */
export function newId (): string {
  return v7()
}

/** The Unix time in ms a UUIDv7 was made at. */
export function timeOfId (id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16)
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * Whether a token's sub names an agent (a UUID), rather than a person an agent acts for (token exchange with an
 * external subject token: `{issuer}#{sub}` or `urn:agentidp:pairwise:…`, neither of which is a UUID).
 */
export function isAgentId (value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value)
}
