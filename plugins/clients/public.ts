/** What the clients capability publishes to the others: who a client is, the auth methods, the privilege rules. */
export type { AuthenticatedClient } from './authentication/index.js'
export type { FederatedIdentity } from './federation/index.js'
export { presentsClientCredentials } from './authentication/methods/index.js'
export { CLIENT_AUTH_METHODS } from './authentication/methods/index.js'
export { ASSERTION_ALGORITHMS } from './credentials/jwk.js'
export { findAgent } from './agents/repository.js'
export { liveKeysOfAgent } from './credentials/repository.js'
export { refusalOf } from './authorization.js'
