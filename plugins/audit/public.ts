/** What the audit capability publishes to the others: the actor helpers, the event types, the chain. */
export { type AuditTrail } from './trail.js'
export { actorOf, principalActor, type AuditActor, type AuditEvent, type StoredAuditEvent } from './events.js'
export { GENESIS_HASH, hashEvent, verifyChain, type ChainVerification } from './chain.js'
export {
  archiveAuditTrail, checkpointKeys, checkpointsOf, serverRetentionDeps, signCheckpoint, verifyArchive, verifyCheckpoints,
  type ArchiveOutcome, type CheckpointRow, type RetentionDeps
} from './retention.js'
export { lastSeq, readChain } from './repository.js'
export { AUDIT_EVENT_TYPES, type AuditEventType } from './events.js'
