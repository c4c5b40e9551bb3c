/** What the audit capability publishes to the others: the actor helpers, the event types, the chain. */
export { type AuditTrail } from './trail.js'
export { actorOf, principalActor, type AuditActor, type AuditEvent, type StoredAuditEvent } from './events.js'
export { GENESIS_HASH, hashEvent, verifyChain } from './chain.js'
export { lastSeq, readChain } from './repository.js'
export { AUDIT_EVENT_TYPES, type AuditEventType } from './events.js'
