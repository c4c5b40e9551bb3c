/**
 * Redis keys of DPoP (prefix `dpop:`): the jtis of proofs already used, each per key, kept as long as a proof could
 * pass the iat check. Organizations need no part of their own here: a proof's htu names its issuer's endpoint.
 */

/** A spent proof: `dpop:{jkt}:{jti_sha256}`, the jti hashed (base64url SHA-256) so its length is bounded. */
export const dpopProofKey = (jkt: string, jtiSha256: string): string => `dpop:${jkt}:${jtiSha256}`
