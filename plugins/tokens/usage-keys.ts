/**
 * Redis keys of the usage counters (prefix `monthly:`), shared by the token endpoint, which increments them, and
 * the agents API, which reads them.
 */

/** The UTC month of a moment, as YYYY-MM. */
export const utcMonth = (at: Date = new Date()): string => at.toISOString().slice(0, 7)

/** Tokens issued to an agent in a UTC month (YYYY-MM): `monthly:{agentId}:{YYYY-MM}`. */
export const monthlyUsageKey = (agentId: string, month: string = utcMonth()): string => `monthly:${agentId}:${month}`
