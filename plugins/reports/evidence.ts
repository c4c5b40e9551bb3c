import { createHash } from 'node:crypto'
import { CompactSign } from 'jose'
import type { Config } from '../../src/config.js'
import { inOrganization, type Sql } from '../../src/database.js'
import type { ZipEntry } from '../../src/zip.js'
import { checkpointKeys, checkpointsOf, verifyChain, verifyCheckpoints } from '../audit/public.js'
import type { SigningKeys } from '../infra/keys.js'
import { accessReview, accessReviewCsv, reviewPeriod } from './access-review.js'
import { keyRotationEvents, tableExtent } from './repository.js'

/** The JWS typ of a bundle's manifest signature. */
export const MANIFEST_TYP = 'evidence-manifest+json'

/** Who the bundle is for: the organization, its issuer identifier and the keys it signs with. */
export interface EvidenceIssuer {
  orgId: string
  issuer: string
  keys: SigningKeys
}

const json = (value: unknown): Buffer => Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8')

/** The password of a connection URL replaced, so the host and database show but no secret. */
function withoutPassword (url: string | undefined): string | null {
  if (url === undefined) return null
  const parsed = new URL(url)
  if (parsed.password !== '') parsed.password = 'REDACTED'
  return parsed.toString()
}

/**
 * The configuration in force with every secret and key removed: for a secret only whether it is set, for a URL its
 * password replaced. Built member by member, so a variable added later is left out until someone decides it may show.
 */
export function redactedConfiguration (config: Config): Record<string, unknown> {
  const set = (value: unknown): { set: boolean } => ({ set: value !== undefined })
  return {
    node_env: config.nodeEnv,
    issuer: config.issuer,
    token_audience: config.tokenAudience,
    token_ttl_seconds: config.tokenTtlSeconds,
    dpop_nonce: config.dpopNonce,
    database_url: withoutPassword(config.databaseUrl) ?? 'embedded PGlite',
    database_app_role: config.databaseAppRole,
    redis_url: withoutPassword(config.redisUrl),
    redis_sentinel: config.redisSentinel ?? null,
    redis_cluster_nodes: config.redisClusterNodes ?? null,
    jwt_private_key: set(config.jwtPrivateKey),
    jwt_previous_public_keys: config.jwtPreviousPublicKeys.length,
    key_encryption_key: set(config.keyEncryptionKey),
    bootstrap_client_id: config.bootstrapClientId ?? null,
    bootstrap_client_secret: set(config.bootstrapClientSecret),
    metrics_token: set(config.metricsToken),
    metrics_public: config.metricsPublic,
    cors_origin: config.corsOrigin,
    trust_proxy: config.trustProxy,
    federation_allow_private_networks: config.federationAllowPrivateNetworks,
    rate_limit: config.rateLimit,
    webhooks: { ...config.webhooks },
    compliance: {
      review_stale_days: config.compliance.reviewStaleDays,
      credential_max_age_days: config.compliance.credentialMaxAgeDays ?? null,
      credential_expiry_warning_days: config.compliance.credentialExpiryWarningDays,
      require_agent_owner: config.compliance.requireAgentOwner,
      audit_retention_days: config.compliance.auditRetentionDays ?? null,
      audit_archive_dir: config.compliance.auditArchiveDir
    }
  }
}

const CONTROL_MAPPING = `# SOC 2 control mapping

How each file of this bundle supports the Trust Services Criteria. Every file is listed with its SHA-256 in
manifest.json, which manifest.jws signs with the issuer's key (verify it against the issuer's JWKS).

| criterion | what it asks | evidence in this bundle |
| --- | --- | --- |
| CC6.1 logical access security | access restricted to identified, authorised identities; credentials and keys protected | access-review.json / .csv (scopes, resources, credential types), configuration.json (secrets only as "set"; REQUIRE_AGENT_OWNER, CREDENTIAL_MAX_AGE_DAYS, DPoP), key-rotation-history.json |
| CC6.2 registration and authorisation | identities created through an approved process, each with an owner | access-review.json: owner and the no_owner flag, created_by of each credential (from the audit trail) |
| CC6.3 role-based access and least privilege | access granted, changed and removed on approval, and reviewed | access-review.json: admin_scopes and admin_granted_recently flags; last-reviews.json (agent.reviewed decisions; revoke suspends) |
| CC6.6 credentials against external threats | credentials expire and rotate; stale and unused ones found | access-review.json: credential_too_old, stale and never_used flags, expires_at and last_used_at; configuration.json: CREDENTIAL_MAX_AGE_DAYS and CREDENTIAL_EXPIRY_WARNING_DAYS (credential.expiring / credential.expired events) |
| CC7.2 monitoring of the system | security events recorded and monitored | audit-verification.json: the hash chain verified; configuration.json: webhooks that deliver the events |
| CC7.3 evaluation of security events | events kept as long as promised and shown untampered | audit-verification.json: retention status (AUDIT_RETENTION_DAYS, signed checkpoints verified, oldest event kept) |
`

/**
 * The evidence bundle of one organization: the access review (JSON and CSV), the last reviews, the configuration
 * without secrets, the key rotation history, the audit verification and retention status, the control mapping,
 * then manifest.json (every other file and its SHA-256) and manifest.jws (a compact JWS over manifest.json's exact
 * bytes, by the issuer's current key).
 */
export async function evidenceBundle (sql: Sql, config: Config, issuer: EvidenceIssuer, now = new Date()): Promise<ZipEntry[]> {
  const report = await accessReview(sql, issuer.orgId, issuer.issuer, config.compliance, reviewPeriod(undefined, config.compliance, now))
  const { keyEvents, extent, checkpoints } = await inOrganization(sql, issuer.orgId, async (tx) => ({
    keyEvents: await keyRotationEvents(tx),
    extent: await tableExtent(tx),
    checkpoints: await checkpointsOf(tx)
  }))
  const chain = await verifyChain(sql, issuer.orgId)
  const signed = await verifyCheckpoints(checkpoints, issuer.orgId, await checkpointKeys(sql, issuer.keys, issuer.orgId))
  const files: ZipEntry[] = [
    { path: 'access-review.json', content: json(report) },
    { path: 'access-review.csv', content: Buffer.from(accessReviewCsv(report), 'utf8') },
    {
      path: 'last-reviews.json',
      content: json({ generated_at: report.generated_at, reviews: report.agents.map((agent) => ({ agent_id: agent.id, client_id: agent.client_id, name: agent.name, status: agent.status, last_review: agent.last_review })) })
    },
    { path: 'configuration.json', content: json(redactedConfiguration(config)) },
    {
      path: 'key-rotation-history.json',
      content: json({
        current_kid: issuer.keys.current.kid,
        published: [...issuer.keys.byKid.values()].map((key) => ({ kid: key.kid, alg: key.alg })),
        events: keyEvents.map((event) => ({ ...event, occurred_at: event.occurred_at.toISOString() }))
      })
    },
    {
      path: 'audit-verification.json',
      content: json({
        verified_at: now.toISOString(),
        chain,
        checkpoints_signature: signed,
        retention: {
          audit_retention_days: config.compliance.auditRetentionDays ?? null,
          events_in_table: Number(extent.events),
          oldest_event: extent.oldest_seq === null ? null : { seq: extent.oldest_seq, occurred_at: extent.oldest_at?.toISOString() ?? null },
          checkpoints: checkpoints.map((checkpoint) => ({
            seq: checkpoint.seq,
            first_seq: checkpoint.first_seq,
            hash: checkpoint.hash,
            pruned_at: checkpoint.pruned_at.toISOString(),
            archive_file: checkpoint.archive_file,
            archive_sha256: checkpoint.archive_sha256
          }))
        }
      })
    },
    { path: 'control-mapping.md', content: Buffer.from(CONTROL_MAPPING, 'utf8') }
  ]
  const manifest = json({
    issuer: issuer.issuer,
    generated_at: now.toISOString(),
    files: files.map((file) => ({ path: file.path, sha256: createHash('sha256').update(file.content).digest('hex') }))
  })
  const { current } = issuer.keys
  const jws = await new CompactSign(manifest).setProtectedHeader({ alg: current.alg, kid: current.kid, typ: MANIFEST_TYP }).sign(current.privateKey)
  return [...files, { path: 'manifest.json', content: manifest }, { path: 'manifest.jws', content: Buffer.from(jws, 'utf8') }]
}
