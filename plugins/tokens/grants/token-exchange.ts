import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { inOrganization } from '../../../src/database.js'
import { InvalidGrant, InvalidRequest, InvalidTarget } from '../../../src/errors.js'
import { findAgent, liveDelegationScopes, type AuthenticatedClient, type ExternalSubject } from '../../clients/public.js'
import { tokenRefOf } from '../../revocation/public.js'
import { actDepthOf, type AccessTokenClaims, type ActorClaim } from '../bearer.js'
import { audienceOf, grantedScopes } from './agent-authority.js'
import type { Grant, GrantContext, Issuance } from './index.js'

/** RFC 8693 §2.1: the grant_type of a token exchange. */
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange'

/** RFC 8693 §3 token type identifiers this server reads or issues. */
export const TokenType = {
  AccessToken: 'urn:ietf:params:oauth:token-type:access_token',
  Jwt: 'urn:ietf:params:oauth:token-type:jwt',
  IdToken: 'urn:ietf:params:oauth:token-type:id_token',
  /** The Identity Assertion JWT Authorization Grant draft's identity assertion (ID-JAG). */
  IdJag: 'urn:ietf:params:oauth:token-type:id-jag'
} as const

/** Subject token types of an external token naming a person, verified through a subject trust. */
const PERSON_TOKEN_TYPES: readonly string[] = [TokenType.Jwt, TokenType.IdToken, TokenType.IdJag]

/** What an actor says of itself in `act`: RFC 8693 §4.1 identity claims, and the profile of an AI agent. */
export const AGENT_SUB_PROFILE = 'ai_agent'

// Every refusal of a subject token for want of authority says the same, so it never tells whether the subject exists.
const NOT_ALLOWED = 'not allowed to act for this subject'
const NOT_VALID = 'subject_token is not valid'
// How many exchanges (for oneself or for another) one token may rest on, as a multiple of DELEGATION_MAX_DEPTH:
// an exchange for oneself adds no actor, yet each adds a token to rest on; this bounds the token's length.
const RESTS_ON_PER_DEPTH = 2

/** A parameter given at most once (RFC 8693 §2.1 names none that repeat but resource and audience). */
function single (body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw new InvalidRequest(`${name} must be given once`)
  return value
}

/** An access token of this issuer (the request's organization), verified and not revoked; else invalid_grant. */
async function liveAccessToken (app: FastifyInstance, request: FastifyRequest, token: string, refusal: string): Promise<AccessTokenClaims> {
  let claims: AccessTokenClaims
  try {
    claims = await app.verifyAccessToken(token, request.issuerContext)
  } catch {
    throw new InvalidGrant(refusal)
  }
  if (await app.revocations.isRevoked(tokenRefOf(request.issuerContext.orgId, claims))) throw new InvalidGrant(refusal)
  return claims
}

/** A token bound to a DPoP key (cnf.jkt) is used only with a proof of that key in this request. */
function requireKeyOf (request: FastifyRequest, claims: AccessTokenClaims, name: string): void {
  const jkt = claims.cnf?.jkt
  if (jkt !== undefined && request.dpopProof?.jkt !== jkt) throw new InvalidGrant(`${name} is bound to a DPoP key: send a DPoP proof signed with that key`)
}

/**
 * The audiences of the new token: `resource` (RFC 8707 URIs, the default audience or the caller's resources) and
 * `audience` (RFC 8693 §2.1 names, the default audience or the caller's resources); neither: the default audience.
 */
function exchangeAudienceOf (body: Record<string, unknown>, client: AuthenticatedClient, fallback: string): string | string[] {
  const resource = body.resource as string | string[] | undefined
  const audience = body.audience as string | string[] | undefined
  if (audience === undefined) return audienceOf(resource, client.resources, fallback)
  const named = [...new Set(Array.isArray(audience) ? audience : [audience])]
  for (const value of named) {
    if (value !== fallback && !client.resources.includes(value)) throw new InvalidTarget(`not an audience this client may ask for: ${value.slice(0, 200)}`)
  }
  const resources = resource === undefined ? [] : [audienceOf(resource, client.resources, fallback)].flat()
  const all = [...new Set([...resources, ...named])]
  return all.length === 1 ? all[0] as string : all
}

/** Whether the subject token's may_act (RFC 8693 §4.4), when it has one, names the caller's agent of this issuer. */
function mayAct (subject: AccessTokenClaims, client: AuthenticatedClient, issuer: string): boolean {
  const mayActClaim = subject.may_act
  if (mayActClaim === undefined) return true
  return mayActClaim.sub === client.agentId && (mayActClaim.iss === undefined || mayActClaim.iss === issuer)
}

/**
 * What the new token rests on: the subject token and whatever it rested on, newest first. Revoking any of them, or
 * its credential, kills the new token (plugins/revocation/state.ts reads them with the token's own keys).
 */
function restsOnOf (subject: AccessTokenClaims, maxDepth: number): NonNullable<AccessTokenClaims['rests_on']> {
  const restsOn = [{ jti: subject.jti, ...(subject.credential_id === undefined ? {} : { credential_id: subject.credential_id }) }, ...subject.rests_on ?? []]
  if (restsOn.length > maxDepth * RESTS_ON_PER_DEPTH) throw new InvalidRequest(`the subject_token was exchanged too many times already: at most ${maxDepth * RESTS_ON_PER_DEPTH} exchanges in a row`)
  return restsOn
}

/**
 * The access token a token exchange issues for the subject, to the caller: for itself (its own token, no act), or
 * as an actor its delegation allows, with the caller prepended to the act chain.
 */
async function exchangedAccessToken ({ app, request, body }: GrantContext, client: AuthenticatedClient, subject: AccessTokenClaims): Promise<Issuance> {
  const { issuer, orgId, tokenAudience } = request.issuerContext
  const maxDepth = app.config.delegationMaxDepth
  const restsOn = restsOnOf(subject, maxDepth)
  const subjectScopes = subject.scope.split(' ').filter(Boolean)
  const common = {
    subject: subject.sub,
    audience: exchangeAudienceOf(body, client, tokenAudience),
    credentialId: client.credentialId,
    notAfter: subject.exp,
    issuedTokenType: TokenType.AccessToken
  }
  // For oneself: the caller's own token (no one acted in it), narrowed to what the agent may hold now.
  if (subject.sub === client.agentId && subject.act === undefined) {
    requireKeyOf(request, subject, 'subject_token')
    return {
      ...common,
      scope: grantedScopes(body.scope, subjectScopes.filter((scope) => client.scopes.includes(scope))),
      claims: { rests_on: restsOn },
      audit: { subject_jti: subject.jti, act: null }
    }
  }
  if (!mayAct(subject, client, issuer)) throw new InvalidGrant(NOT_ALLOWED)
  const delegated = await inOrganization(app.sql, orgId, async (tx) => await liveDelegationScopes(tx, subject.sub, client.agentId))
  if (delegated === undefined) throw new InvalidGrant(NOT_ALLOWED)
  const act: ActorClaim = { sub: client.agentId, iss: issuer, sub_profile: AGENT_SUB_PROFILE, ...(subject.act === undefined ? {} : { act: subject.act }) }
  const depth = actDepthOf(act) as number
  if (depth > maxDepth) throw new InvalidRequest(`the delegation chain would be ${depth} agents deep; DELEGATION_MAX_DEPTH allows ${maxDepth}`)
  return {
    ...common,
    scope: grantedScopes(body.scope, subjectScopes.filter((scope) => delegated.includes(scope))),
    claims: { act, rests_on: restsOn },
    audit: { subject_jti: subject.jti, act }
  }
}

/**
 * How a token for a person names them, as their trust decides: `{issuer}#{sub}`, or a pairwise id that differs for
 * each trust. Neither can be taken for an agent id (a UUID).
 */
function personSubjectOf (person: ExternalSubject): string {
  if (person.trust.subject_id === 'issuer_sub') return `${person.issuer}#${person.subject}`
  const digest = createHash('sha256').update(person.trust.id).update('\0').update(person.issuer).update('\0').update(person.subject).digest('base64url')
  return `urn:agentidp:pairwise:${digest}`
}

/**
 * A token for a person signed in at an external issuer, to an agent their issuer's subject trust lists: sub the
 * person (qualified), act the agent, scopes at most the trust's for that agent and the agent's own, exp never past
 * the external token's.
 */
async function actingForPerson ({ request, body }: GrantContext, client: AuthenticatedClient, person: ExternalSubject): Promise<Issuance> {
  const { issuer, tokenAudience } = request.issuerContext
  const entry = person.trust.actors.find((actor) => actor.agent_id === client.agentId)
  if (entry === undefined) throw new InvalidGrant(NOT_ALLOWED)
  const mayActClaim = person.claims.may_act as { sub?: unknown } | undefined
  if (mayActClaim !== undefined && mayActClaim?.sub !== client.agentId) throw new InvalidGrant(NOT_ALLOWED)
  const act: ActorClaim = { sub: client.agentId, iss: issuer, sub_profile: AGENT_SUB_PROFILE }
  return {
    subject: personSubjectOf(person),
    scope: grantedScopes(body.scope, entry.scopes.filter((scope) => client.scopes.includes(scope))),
    audience: exchangeAudienceOf(body, client, tokenAudience),
    credentialId: client.credentialId,
    notAfter: person.claims.exp,
    issuedTokenType: TokenType.AccessToken,
    claims: { act },
    audit: { external: { iss: person.issuer, sub: person.subject, trust_id: person.trust.id }, act }
  }
}

/**
 * A workload JWT for the caller's own agent (its own subject token, no act): aud one audience its agent lists in
 * `audiences` (sts.amazonaws.com), else invalid_target.
 */
async function workloadJwt ({ app, request, body }: GrantContext, client: AuthenticatedClient, subject: AccessTokenClaims): Promise<Issuance> {
  if (subject.sub !== client.agentId || subject.act !== undefined) throw new InvalidRequest(`${TokenType.Jwt} is issued for the caller itself: present its own access token as subject_token`)
  requireKeyOf(request, subject, 'subject_token')
  const fields = body as Record<string, unknown>
  if (fields.resource !== undefined) throw new InvalidRequest(`${TokenType.Jwt} takes its aud from audience, not resource`)
  const audience = fields.audience
  if (audience === undefined) throw new InvalidRequest(`${TokenType.Jwt} needs an audience, e.g. sts.amazonaws.com`)
  if (typeof audience !== 'string') throw new InvalidTarget('a workload JWT has exactly one audience')
  const agent = await inOrganization(app.sql, request.issuerContext.orgId, async (tx) => await findAgent(tx, client.agentId))
  if (agent?.audiences.includes(audience) !== true) throw new InvalidTarget(`not an audience this client may ask for: ${audience.slice(0, 200)} (an agent's audiences list them)`)
  return {
    subject: client.agentId,
    scope: [],
    audience,
    credentialId: client.credentialId,
    notAfter: subject.exp,
    issuedTokenType: TokenType.Jwt,
    audit: { subject_jti: subject.jti, act: null }
  }
}

/**
 * RFC 8693 token exchange. The caller (any client authentication method) presents a subject token, an access token
 * of this issuer, and gets a new token for that subject:
 * - for itself, when the subject token is its own (no act): narrowed, rebound to its DPoP key when it sends a proof;
 * - as an actor, when the subject agent granted it a delegation (and the subject token's may_act, if any, names it):
 *   act names the caller, with the subject token's act nested inside, newest first, at most DELEGATION_MAX_DEPTH deep.
 * Scopes are the intersection of those asked for, the subject token's and the delegation's (or the caller's own);
 * aud follows resource and audience; exp never passes the subject token's. An optional actor_token must be an access
 * token of the caller itself. With requested_token_type jwt, a workload JWT for the caller itself instead (see
 * workloadJwt). The new access token rests on the subject token: revoking that (or anything it rests on),
 * suspending an agent of the chain or revoking the credential of any of them kills it.
 */
export const tokenExchange: Grant = {
  parameters: ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'scope', 'resource', 'audience'],
  clientAuthentication: 'required',
  async handle (context) {
    const { app, request, body, client } = context
    if (client === null) throw new Error('token exchange without an authenticated client')
    const fields = body as Record<string, unknown>
    const subjectToken = single(fields, 'subject_token')
    const subjectTokenType = single(fields, 'subject_token_type')
    const actorToken = single(fields, 'actor_token')
    const actorTokenType = single(fields, 'actor_token_type')
    const requestedTokenType = single(fields, 'requested_token_type') ?? TokenType.AccessToken
    if (subjectToken === undefined || subjectTokenType === undefined) throw new InvalidRequest('subject_token and subject_token_type are required')
    const forPerson = PERSON_TOKEN_TYPES.includes(subjectTokenType)
    if (subjectTokenType !== TokenType.AccessToken && !forPerson) throw new InvalidRequest(`subject_token_type must be ${[TokenType.AccessToken, ...PERSON_TOKEN_TYPES].join(', ')}`)
    if ((actorToken === undefined) !== (actorTokenType === undefined)) throw new InvalidRequest('actor_token and actor_token_type go together')
    if (actorTokenType !== undefined && actorTokenType !== TokenType.AccessToken) throw new InvalidRequest(`actor_token_type must be ${TokenType.AccessToken}`)
    if (requestedTokenType !== TokenType.AccessToken && requestedTokenType !== TokenType.Jwt) throw new InvalidRequest(`requested_token_type must be ${TokenType.AccessToken} or ${TokenType.Jwt}`)
    if (actorToken !== undefined) {
      const actor = await liveAccessToken(app, request, actorToken, 'actor_token is not valid')
      // RFC 8693 §2.1: the actor token stands for the acting party, which is the authenticated caller here.
      if (actor.client_id !== client.clientId || actor.sub !== client.agentId || actor.act !== undefined) throw new InvalidGrant('actor_token is not a token of the authenticated client')
      requireKeyOf(request, actor, 'actor_token')
    }
    if (forPerson) {
      if (requestedTokenType === TokenType.Jwt) throw new InvalidRequest(`${TokenType.Jwt} is issued for the caller itself, not for a person`)
      return await actingForPerson(context, client, await app.verifySubjectToken(request, subjectToken))
    }
    const subject = await liveAccessToken(app, request, subjectToken, NOT_VALID)
    return requestedTokenType === TokenType.Jwt ? await workloadJwt(context, client, subject) : await exchangedAccessToken(context, client, subject)
  }
}
