/**
 * Redis keys of the revocation state (prefix `revoked:`), shared by those who change it (agents, credentials,
 * revocation) and those who check it (token endpoint, bearer auth, introspection).
 */

/** Set when a token is revoked, until it would have expired: `revoked:{jti}`. */
export const revokedTokenKey = (jti: string): string => `revoked:${jti}`

/**
 * Set (value: epoch ms) when an agent is suspended, reactivated or decommissioned, for as long as any token or
 * cached verification from before then may live. While it exists, checks of that agent consult PostgreSQL.
 */
export const agentChangedKey = (agentId: string): string => `revoked:agent:${agentId}`

/**
 * Same as agentChangedKey, for an organization that was suspended (every token of its issuer from before dies):
 * `revoked:org:{id}`. The default organization is never suspended and has none.
 */
export const organizationChangedKey = (orgId: string): string => `revoked:org:${orgId}`

/** Same as agentChangedKey, for a credential that was revoked. */
export const credentialChangedKey = (credentialId: string): string => `revoked:credential:${credentialId}`
