import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { AuditEventPageSchema, AuditEventQuerySchema, AuditExportQuerySchema } from '../../schemas/audit.js'
import { problemResponses } from '../../schemas/common.js'
import { AdminScope } from '../../src/scopes.js'
import { managementRouteConfig } from '../infra/rate-limit.js'
import { exportStream, listPage } from './queries.js'

/** The audit trail, read-only: a filtered, paginated query and an NDJSON export for SIEM ingestion. */
const audit: FastifyPluginAsyncTypebox = async (app) => {
  const config = managementRouteConfig(app.config)

  app.get('/api/v1/audit-events', {
    preValidation: app.requireScopes(AdminScope.AuditRead),
    config,
    schema: {
      tags: ['audit'],
      summary: 'List audit events, newest first',
      description: 'Filters combine with AND; several types match any of them. Pass next_cursor as cursor for the next page, with the same filters.',
      security: [{ bearerAuth: [] }],
      querystring: AuditEventQuerySchema,
      response: { 200: AuditEventPageSchema, ...problemResponses(400, 401, 403, 429, 503) }
    }
  }, async (request) => await listPage(app.sql, request.issuerContext.orgId, request.query))

  app.get('/api/v1/audit-events/export', {
    preValidation: app.requireScopes(AdminScope.AuditRead),
    config,
    schema: {
      tags: ['audit'],
      summary: 'Export audit events as NDJSON, in chain order',
      description: 'One JSON event per line with prev_hash and hash, oldest first, streamed whatever the range; a copy verifies outside AgentIdP by recomputing each hash.',
      security: [{ bearerAuth: [] }],
      querystring: AuditExportQuerySchema,
      response: {
        200: { description: 'Newline-delimited JSON events', content: { 'application/x-ndjson': { schema: Type.String() } } },
        ...problemResponses(400, 401, 403, 429, 503)
      }
    }
  }, async (request, reply) => {
    const stream = await exportStream(app.sql, request.issuerContext.orgId, request.query)
    return reply
      .type('application/x-ndjson')
      .header('content-disposition', 'attachment; filename="audit-events.ndjson"')
      // The schema documents the lines; Fastify streams a Readable as it is.
      .send(stream as never)
  })
}

export default audit

// What other capabilities, the CLI, tests and benchmarks use of the trail.
export { default as auditTrail } from './trail.js'
export { default as auditRetention } from './retention.js'
export * from './public.js'
