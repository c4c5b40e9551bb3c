import { organizationSegment } from '../../src/store.js'

/**
 * Redis keys of DPoP (prefix `dpop:`): the jtis of proofs already used, each per organization and key, kept as long
 * as a proof could pass the iat check.
 */

/**
 * A spent proof: `dpop:{org}{jkt}:{jti_sha256}`, `{org}` empty for the default organization (organizationSegment),
 * the jti hashed (base64url SHA-256) so its length is bounded.
 */
export const dpopProofKey = (orgId: string, jkt: string, jtiSha256: string): string => `dpop:${organizationSegment(orgId)}${jkt}:${jtiSha256}`
