import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Static } from 'typebox'
import { AgentParamsSchema } from '../../schemas/agents.js'
import { problemResponses } from '../../schemas/common.js'
import { DidDocumentSchema } from '../../schemas/oidc.js'
import { inOrganization } from '../../src/database.js'
import { agentDid, issuerDid, issuerDidDocumentPath } from '../../src/did-web.js'
import { gone, notFound } from '../../src/errors.js'
import { findAgent, liveKeysOfAgent } from '../clients/public.js'
import type { IssuerContext } from '../tokens/public.js'

type DidDocument = Static<typeof DidDocumentSchema>
type Jwk = DidDocument['verificationMethod'][number]['publicKeyJwk']

// DID 1.0, and the JsonWebKey2020 suite the verification methods use.
const CONTEXT = ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/suites/jws-2020/v1']
// W3C DID 1.0 §6.2: the media type of a DID document in JSON.
const DID_JSON = 'application/did+json'
// The issuer's keys rotate with the JWKS, cached as long; an agent's keys and standing change at any time.
const ISSUER_CACHE_CONTROL = 'public, max-age=300'
const AGENT_CACHE_CONTROL = 'public, max-age=60'

/** A DID document whose verification methods are `keys`, each under authentication and assertionMethod. */
function didDocument (id: string, keys: Array<{ fragment: string, jwk: Jwk }>, controller?: string): DidDocument {
  const methods = keys.map(({ fragment, jwk }) => ({ id: `${id}#${fragment}`, type: 'JsonWebKey2020' as const, controller: id, publicKeyJwk: jwk }))
  const ids = methods.map((method) => method.id)
  return { '@context': CONTEXT, id, ...(controller === undefined ? {} : { controller }), verificationMethod: methods, authentication: ids, assertionMethod: ids }
}

/**
 * did:web documents (W3C DID 1.0): the issuer's, whose keys are its signing keys as the JWKS publishes them, and each
 * agent's, whose keys are its live private_key_jwt keys. Both derive from the issuer the request speaks to
 * (src/did-web.ts), so an organization's sit under its own path.
 */
const dids: FastifyPluginAsyncTypebox = async (app) => {
  const issuerDocuments = new WeakMap<IssuerContext, DidDocument>()

  function issuerDocument (context: IssuerContext): DidDocument {
    const known = issuerDocuments.get(context)
    if (known !== undefined) return known
    const document = didDocument(issuerDid(context.issuer), context.keys.jwks.keys.map((jwk) => ({ fragment: jwk.kid, jwk })))
    issuerDocuments.set(context, document)
    return document
  }

  // did:web puts an issuer without a path at /.well-known/did.json, one with a path ({ISSUER}/o/{slug}) at {path}/did.json.
  for (const path of ['/.well-known/did.json', '/did.json'] as const) {
    app.get(path, {
      schema: {
        tags: ['discovery'],
        summary: path === '/.well-known/did.json' ? 'The issuer\'s DID document (did:web), for an issuer without a path' : 'The issuer\'s DID document (did:web), for an issuer with a path',
        description: 'The verification methods are the issuer\'s signing keys, as the JWKS publishes them (current and previous), under authentication and assertionMethod. application/did+json. 404 at the path did:web does not give this issuer.',
        response: { 200: DidDocumentSchema, ...problemResponses(404) }
      }
    }, async (request, reply) => {
      const context = request.issuerContext
      if (issuerDidDocumentPath(context.issuer) !== path) throw notFound(`${issuerDid(context.issuer)} is resolved at ${context.url(issuerDidDocumentPath(context.issuer))}`)
      return await reply.type(DID_JSON).header('cache-control', ISSUER_CACHE_CONTROL).send(issuerDocument(context))
    })
  }

  app.get('/agents/:id/did.json', {
    schema: {
      tags: ['discovery'],
      summary: 'An agent\'s DID document (did:web)',
      description: 'did:web:{host}[:{issuer path}]:agents:{id}. Its verification methods are the agent\'s live private_key_jwt keys (fragment: the RFC 7638 thumbprint), under authentication and assertionMethod; its controller is the issuer\'s DID. A suspended agent\'s document has none; a decommissioned agent\'s is 410. application/did+json.',
      params: AgentParamsSchema,
      response: { 200: DidDocumentSchema, ...problemResponses(400, 404, 410, 503) }
    }
  }, async (request, reply) => {
    const context = request.issuerContext
    const { id } = request.params
    const { agent, keys } = await inOrganization(app.sql, context.orgId, async (tx) => {
      const agent = await findAgent(tx, id)
      return { agent, keys: agent?.status === 'active' ? await liveKeysOfAgent(tx, id) : [] }
    })
    if (agent === undefined) throw notFound(`no agent ${id}`)
    if (agent.status === 'decommissioned') throw gone(`agent ${id} is decommissioned: its DID is deactivated`)
    const document = didDocument(agentDid(context.issuer, id), keys.map((key) => ({ fragment: key.jwk_thumbprint, jwk: key.public_jwk })), issuerDid(context.issuer))
    return await reply.type(DID_JSON).header('cache-control', AGENT_CACHE_CONTROL).send(document)
  })
}

export default dids
