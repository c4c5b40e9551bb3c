/**
 * did:web identifiers (W3C DID 1.0, did:web method) of an issuer and its agents, derived from the issuer identifier
 * alone, so an organization's issuer ({ISSUER}/o/{slug}) gets its own without another rule: the host (a port as
 * %3A), then each path segment, colon-separated. did:web:{host}[:{path}…] resolves to
 * https://{host}[/{path}…]/did.json, or to https://{host}/.well-known/did.json when there is no path.
 */

/** The did:web of an issuer: `did:web:idp.example.com`, `did:web:localhost%3A3000`, `did:web:idp.example.com:o:acme`. */
export function issuerDid (issuer: string): string {
  const url = new URL(issuer)
  // URL gives the host in ASCII (punycode) and the path percent-encoded, as did:web wants them.
  const host = url.port === '' ? url.hostname : `${url.hostname}%3A${url.port}`
  const segments = url.pathname.split('/').filter((segment) => segment !== '')
  return ['did:web', host, ...segments].join(':')
}

/** The did:web of an agent of the issuer: `{issuer's DID}:agents:{id}`, served at {issuer}/agents/{id}/did.json. */
export function agentDid (issuer: string, agentId: string): string {
  return `${issuerDid(issuer)}:agents:${agentId}`
}

/** The path, relative to the issuer, of the issuer's own DID document: /.well-known/did.json without a path, else /did.json. */
export function issuerDidDocumentPath (issuer: string): '/.well-known/did.json' | '/did.json' {
  return new URL(issuer).pathname.replace(/\/+$/, '') === '' ? '/.well-known/did.json' : '/did.json'
}
