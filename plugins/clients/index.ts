import type { FastifyPluginAsync } from 'fastify'
import agents from './agents/routes.js'
import credentials from './credentials/routes.js'
import delegations from './delegations/routes.js'
import subjectTrusts from './subject-trusts/routes.js'

/**
 * Clients: agents, their credentials, and how a client proves it holds one. The routes are encapsulated here;
 * client authentication is published on the root (`app.authenticateClient`) for the OAuth endpoints.
 */
const clients: FastifyPluginAsync = async (app) => {
  await app.register(agents)
  await app.register(credentials)
  await app.register(delegations)
  await app.register(subjectTrusts)
}

export default clients
export { default as clientAuthentication } from './authentication/index.js'
export { default as clientFederation } from './federation/index.js'
export { default as credentialExpiryScan } from './credentials/hygiene.js'
export * from './public.js'
