import { describe, expect, it } from 'vitest'
import { COMMON_PARAMETERS, dropUnreadParameters, grantOf, GRANTS } from '../../plugins/tokens/grants/index.js'

describe('the grant registry', () => {
  it('finds a grant by its own grant_type only, never by an inherited member', () => {
    expect(grantOf('client_credentials')).toBe(GRANTS.client_credentials)
    for (const name of ['toString', '__proto__', 'constructor', 'hasOwnProperty', 'CLIENT_CREDENTIALS']) expect(grantOf(name), name).toBeUndefined()
  })

  it('drops the parameters a grant does not read, keeping those of every request (RFC 6749 §3.2 ignores unknown ones)', () => {
    const grant = GRANTS.client_credentials
    if (grant === undefined) throw new Error('client_credentials is registered')
    const body: Record<string, unknown> = { grant_type: 'client_credentials', scope: 'a b', resource: ['https://r.example'], client_id: 'agt_x', client_secret: 's', subject_token: 't', actor_token: 'u', assertion: 'v' }
    dropUnreadParameters(body, grant)
    expect(body).toEqual({ grant_type: 'client_credentials', scope: 'a b', resource: ['https://r.example'], client_id: 'agt_x', client_secret: 's' })
    expect(Object.keys(body).every((name) => grant.parameters.includes(name) || COMMON_PARAMETERS.includes(name))).toBe(true)
  })
})
