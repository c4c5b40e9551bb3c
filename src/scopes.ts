/** Scopes that guard the management API and the privileged OAuth endpoints. */
export const AdminScope = {
  AgentsRead: 'agents:read',
  AgentsWrite: 'agents:write',
  AuditRead: 'audit:read',
  MetricsRead: 'metrics:read',
  TokensIntrospect: 'tokens:introspect'
} as const

/** Every admin scope: what the bootstrap admin holds. */
export const ADMIN_SCOPES: string[] = Object.values(AdminScope)

/** RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash. */
export const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/

/** Splits an RFC 6749 scope parameter into distinct scope tokens, in order. */
export function parseScope (scope: string): string[] {
  return [...new Set(scope.split(' ').filter((token) => token !== ''))]
}
