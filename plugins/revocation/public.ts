/** What the revocation capability publishes to the others: the revocation state's types and the watermarks. */
export { publishChanges } from './watermarks.js'
export { issuedAtMsOf, tokenRefOf, type RevocationState, type TokenRef } from './state.js'
