import { inOrganization } from '../../../src/database.js'
import type { AuditActor } from '../../audit/public.js'
import { badRequest, conflict, notFound } from '../../../src/errors.js'
import { newId } from '../../../src/ids.js'
import { generateClientSecret, hashSecret } from '../../../src/secrets.js'
import type { CreateCredentialBody, Credential, CredentialList, IssuedCredential, PublicJwk } from '../../../schemas/credentials.js'
import { authorize, type Caller } from '../authorization.js'
import { publishChanges } from '../../revocation/public.js'
import type { Deps } from '../deps.js'
import type { AgentRow } from '../agents/repository.js'
import { existingAgent } from '../agents/service.js'
import { federationRuleOf, refuseFederatedMembers, type FederationRule } from './federated.js'
import { publicJwkOf } from './jwk.js'
import { findCredential, insertCredential, listCredentials, liveFederationRuleExists, revokeCredential, type CredentialRow } from './repository.js'

const iso = (date: Date | null): string | null => date === null ? null : date.toISOString()

function toCredential (row: CredentialRow, clientId: string): Credential {
  return {
    id: row.id,
    type: row.type,
    client_id: clientId,
    created_at: row.created_at.toISOString(),
    expires_at: iso(row.expires_at),
    revoked_at: iso(row.revoked_at),
    last_used_at: iso(row.last_used_at),
    ...keyMaterialOf(row),
    ...federationOf(row)
  }
}

/** A federated credential's trust rule, its unset members left out; nothing for another type. */
function federationOf (row: CredentialRow): Pick<Credential, 'issuer' | 'subject' | 'audience' | 'claims' | 'jwks' | 'jwks_uri'> {
  const rule = row.federation
  if (rule === undefined || rule === null) return {}
  return {
    issuer: rule.issuer,
    subject: rule.subject,
    claims: rule.claims,
    ...(rule.audience === null ? {} : { audience: rule.audience }),
    ...(rule.jwks === null ? {} : { jwks: rule.jwks }),
    ...(rule.jwks_uri === null ? {} : { jwks_uri: rule.jwks_uri })
  }
}

/** A key credential's public JWK and thumbprint; nothing for a secret. */
function keyMaterialOf (row: CredentialRow): Pick<Credential, 'jwk' | 'jwk_thumbprint'> {
  return row.public_jwk === null || row.jwk_thumbprint === null ? {} : { jwk: row.public_jwk, jwk_thumbprint: row.jwk_thumbprint }
}

type Material = { secret: string, secret_hash: string } | { public_jwk: PublicJwk, jwk_thumbprint: string } | { federation: FederationRule }

/**
 * The material of a new credential: a generated secret and its hash, the public key the body registers, or the
 * federation trust rule it describes.
 */
async function materialOf (id: string, body: CreateCredentialBody | undefined, allowPrivateNetworks: boolean): Promise<Material> {
  const type = body?.type ?? 'client_secret'
  if (type === 'federated') {
    if (body?.jwk !== undefined) throw badRequest('jwk is for type private_key_jwt only', [{ location: 'body/jwk', message: 'only with type private_key_jwt' }])
    return { federation: await federationRuleOf(body as CreateCredentialBody, allowPrivateNetworks) }
  }
  refuseFederatedMembers(body, type)
  if (type === 'client_secret') {
    if (body?.jwk !== undefined) throw badRequest('jwk is for type private_key_jwt only', [{ location: 'body/jwk', message: 'only with type private_key_jwt' }])
    const secret = generateClientSecret(id)
    return { secret, secret_hash: await hashSecret(secret) }
  }
  if (body?.jwk === undefined) throw badRequest('type private_key_jwt requires jwk, the public key', [{ location: 'body/jwk', message: 'required with type private_key_jwt' }])
  const { jwk, thumbprint } = await publicJwkOf(body.jwk as Record<string, unknown>)
  return { public_jwk: jwk, jwk_thumbprint: thumbprint }
}

/** What credential.created records of a key or a federation rule beside its id: public material only. */
function credentialEventData (row: CredentialRow): Record<string, unknown> {
  if (row.jwk_thumbprint !== null) return { credential_type: row.type, jwk_thumbprint: row.jwk_thumbprint }
  const rule = row.federation
  if (rule === undefined || rule === null) return {}
  return { credential_type: row.type, issuer: rule.issuer, subject: rule.subject, audience: rule.audience, claims: rule.claims, jwks_uri: rule.jwks_uri, jwks_inline: rule.jwks !== null }
}

const DAY_MS = 86_400_000

/**
 * When a new credential expires: as asked, or never; with CREDENTIAL_MAX_AGE_DAYS, at the latest that many days from
 * now (the default when none is asked), and an explicit later one is refused.
 */
function expiryOf (body: CreateCredentialBody | undefined, maxAgeDays: number | undefined): Date | null {
  const now = Date.now()
  const latest = maxAgeDays === undefined ? undefined : new Date(now + maxAgeDays * DAY_MS)
  if (body?.expires_at === undefined) return latest ?? null
  const expiresAt = new Date(body.expires_at)
  if (!(expiresAt.getTime() > now)) {
    throw badRequest('expires_at must be in the future', [{ location: 'body/expires_at', message: 'must be in the future' }])
  }
  if (latest !== undefined && expiresAt > latest) {
    throw badRequest(`expires_at is later than CREDENTIAL_MAX_AGE_DAYS (${maxAgeDays} days) allows: at most ${latest.toISOString()}`, [{ location: 'body/expires_at', message: `must be at most ${maxAgeDays} days from now` }])
  }
  return expiresAt
}

function refuseDecommissioned (agent: AgentRow): void {
  if (agent.status === 'decommissioned') throw conflict(`agent ${agent.id} is decommissioned: it can hold no new credential`)
}

/**
 * Credentials of an agent: server-generated secrets, shown once, stored as argon2id hashes, or public keys the
 * agent signs client assertions with (private_key_jwt); listed and revoked.
 */
export function credentialService (deps: Deps) {
  return {
    /**
     * Issues a new credential. The secret carries the credential's id (so a token request checks one hash) and is
     * returned only here. Suspended agents may receive one (an admin preparing reactivation); decommissioned: 409.
     * The caller's authority over the agent is checked before hashing and again under the row lock (see authorize).
     */
    async create (agentId: string, body: CreateCredentialBody | undefined, actor: AuditActor, caller: Caller): Promise<IssuedCredential> {
      const expiresAt = expiryOf(body, deps.config.compliance.credentialMaxAgeDays)
      // Checked before hashing, so a request for an unknown, retired or forbidden agent costs no argon2 work.
      const found = await inOrganization(deps.sql, actor.orgId, async (tx) => await existingAgent(tx, agentId))
      refuseDecommissioned(found)
      authorize(deps.config, caller, { kind: 'credential.create', target: found })
      const id = newId()
      const material = await materialOf(id, body, deps.config.federationAllowPrivateNetworks)
      const { agent, row } = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        // FOR SHARE: a concurrent decommissioning (FOR UPDATE) waits for this insert and then revokes it too, or
        // this waits for it and sees the agent decommissioned; never a live credential on a retired agent.
        const agent = await existingAgent(tx, agentId, 'share')
        refuseDecommissioned(agent)
        authorize(deps.config, caller, { kind: 'credential.create', target: agent })
        if ('federation' in material && await liveFederationRuleExists(tx, material.federation)) {
          throw conflict('a live federated credential with this issuer, subject and claims exists already: a token it accepts must stand for one agent only')
        }
        const row = await insertCredential(tx, { id, agent_id: agentId, expires_at: expiresAt, ...material })
        await deps.audit.recordIn(tx, {
          type: 'credential.created',
          agentId,
          ...actor,
          data: { credential_id: row.id, expires_at: iso(row.expires_at), ...credentialEventData(row) }
        })
        return { agent, row }
      })
      return {
        id: row.id,
        type: row.type,
        client_id: agent.client_id,
        ...('secret' in material ? { client_secret: material.secret } : {}),
        created_at: row.created_at.toISOString(),
        expires_at: iso(row.expires_at),
        ...keyMaterialOf(row),
        ...federationOf(row)
      }
    },

    /** Every credential of the agent, live, expired or revoked, oldest first: never a secret or a hash. */
    async list (orgId: string, agentId: string): Promise<CredentialList> {
      const { agent, rows } = await inOrganization(deps.sql, orgId, async (tx) => ({ agent: await existingAgent(tx, agentId), rows: await listCredentials(tx, agentId) }))
      return { items: rows.map((row) => toCredential(row, agent.client_id)) }
    },

    /**
     * Revokes the credential: it stops working at once on every replica. Revoking a revoked credential is a
     * success that changes nothing (DELETE is idempotent); a credential of another agent is a 404. The caller's
     * authority over the agent is checked under a share lock, so the agent cannot gain scopes meanwhile.
     */
    async revoke (agentId: string, credentialId: string, actor: AuditActor, caller: Caller): Promise<void> {
      const at = new Date()
      const revoked = await inOrganization(deps.sql, actor.orgId, async (tx) => {
        const agent = await existingAgent(tx, agentId, 'share')
        const credential = await findCredential(tx, agentId, credentialId)
        if (credential === undefined) throw notFound(`agent ${agentId} has no credential ${credentialId}`)
        authorize(deps.config, caller, { kind: 'credential.revoke', target: agent, bootstrapCredential: credential.bootstrap })
        const revoked = await revokeCredential(tx, agentId, credentialId, at)
        if (revoked) await deps.audit.recordIn(tx, { type: 'credential.revoked', agentId, ...actor, data: { credential_id: credentialId, reason: 'revoked' } })
        return revoked
      })
      if (revoked) await publishChanges(deps, { credentialIds: [credentialId] }, at)
    }
  }
}
