import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { OAuthErrorSchema, ProblemSchema, STORABLE_JSON_SCHEMAS } from '../../schemas/common.js'

/**
 * OpenAPI 3.1 generated from the route schemas (/docs/json) and Swagger UI served from local assets (/docs).
 * Registered before the capabilities so it sees every route they add.
 */
export default fp(async (app) => {
  app.addSchema(ProblemSchema)
  app.addSchema(OAuthErrorSchema)
  for (const schema of STORABLE_JSON_SCHEMAS) app.addSchema(schema)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'AgentIdP',
        description: 'OAuth 2.0 / OpenID Connect identity provider for AI agents.',
        version: '0.1.0'
      },
      // Relative: "Try it out" calls the host the page was opened at (127.0.0.1 or localhost, whatever ISSUER says),
      // which is the only origin the page's CSP lets it connect to.
      servers: [{ url: '/', description: `this server (ISSUER ${app.defaultIssuer.issuer})` }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token from /oauth2/token with the scopes the operation names. A DPoP-bound token (token_type DPoP) goes as Authorization: DPoP <token> with a DPoP proof header instead (RFC 9449; docs/guide/dpop.md)' },
          clientSecretBasic: { type: 'http', scheme: 'basic', description: 'client_id and client_secret, form-urlencoded, as RFC 6749 §2.3.1 says' }
        }
      }
    },
    refResolver: {
      // Components keep the $id they were registered with, so the document names them Problem and OAuthError.
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`)
    }
  })
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: {
      docExpansion: 'list',
      deepLinking: true,
      // Runs in the browser (serialized as source, so it may use nothing from this module). Swagger UI sends every
      // form field, the empty ones as `name=`: the token endpoint then sees a scope that names nothing, an empty
      // resource, or client_id and client_secret beside Basic. A field left empty is left out, as a person means.
      requestInterceptor: (request) => {
        const type: string = request.headers?.['Content-Type'] ?? request.headers?.['content-type'] ?? ''
        if (typeof request.body === 'string' && type.startsWith('application/x-www-form-urlencoded')) {
          request.body = new URLSearchParams([...new URLSearchParams(request.body)].filter(([, value]) => value !== '')).toString()
        }
        return request
      }
    },
    staticCSP: true
  })
}, { name: 'docs', dependencies: ['issuer-context'] })
