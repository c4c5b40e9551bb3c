/** Scopes that guard the management API and the privileged OAuth endpoints. */
export const AdminScope = {
  AgentsRead: 'agents:read',
  AgentsWrite: 'agents:write',
  AuditRead: 'audit:read',
  KeysWrite: 'keys:write',
  MetricsRead: 'metrics:read',
  OrganizationsRead: 'organizations:read',
  OrganizationsWrite: 'organizations:write',
  /** Record access-review decisions (POST /api/v1/reviews); revoke suspends the agent, within the privilege rules. */
  ReviewsWrite: 'reviews:write',
  TokensIntrospect: 'tokens:introspect',
  /** Read webhook subscriptions and their deliveries (never a secret). */
  WebhooksRead: 'webhooks:read',
  /** Create, change, rotate, test, redeliver and delete webhook subscriptions: they receive every audit event they name. */
  WebhooksWrite: 'webhooks:write'
} as const

/** Every admin scope: what the bootstrap admin holds. */
export const ADMIN_SCOPES: string[] = Object.values(AdminScope)

/**
 * The platform's scopes: authority over every organization (and the deployment's metrics), held in the default
 * organization only. No agent of another organization is ever granted one, whoever asks.
 */
export const PLATFORM_SCOPES: readonly string[] = [AdminScope.OrganizationsRead, AdminScope.OrganizationsWrite, AdminScope.MetricsRead]

/** What an organization's first admin holds: every admin scope but the platform's. */
export const ORGANIZATION_ADMIN_SCOPES: string[] = ADMIN_SCOPES.filter((scope) => !PLATFORM_SCOPES.includes(scope))

const MANAGEMENT_SCOPES: ReadonlySet<string> = new Set(ADMIN_SCOPES)

/**
 * Whether the scope is a management scope: this server's own authority (every AdminScope, including those later
 * added to it), as opposed to an application scope that resource servers check (orders:read). Only a holder of a
 * management scope may grant it (see plugins/clients/authorization.ts).
 */
export function isManagementScope (scope: string): boolean {
  return MANAGEMENT_SCOPES.has(scope)
}

/** The management scopes among `scopes`, in their order. */
export function managementScopesOf (scopes: Iterable<string>): string[] {
  return [...scopes].filter(isManagementScope)
}

/** RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash. */
export const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/

/** Splits an RFC 6749 scope parameter into distinct scope tokens, in order. */
export function parseScope (scope: string): string[] {
  return [...new Set(scope.split(' ').filter((token) => token !== ''))]
}
