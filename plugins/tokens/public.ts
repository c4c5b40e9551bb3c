/** What the tokens capability publishes to the others: Bearer verification, the issuer context, the OAuth route helper, grants, usage keys, DPoP algorithms. */
export { issuerContextOf, type IssuerContext } from './issuer-context.js'
export { GRANTS } from './grants/index.js'
export { monthlyUsageKey, utcMonth } from './usage-keys.js'
export { authorizationHeaderCount, refused, MAX_TOKEN_LENGTH, type AccessTokenClaims, type Denial, type Principal } from './bearer.js'
export { oauthRoute } from './oauth-route.js'
export { DPOP_ALGORITHMS } from './dpop.js'
