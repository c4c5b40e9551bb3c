import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { problemResponses } from '../../schemas/common.js'
import { AccessReviewQuerySchema, AccessReviewReportSchema } from '../../schemas/reports.js'
import { AdminScope } from '../../src/scopes.js'
import { managementRouteConfig } from '../infra/rate-limit.js'
import { storedZip } from '../../src/zip.js'
import { accessReview, accessReviewCsv, reviewPeriod } from './access-review.js'
import { evidenceBundle } from './evidence.js'

const security = [{ bearerAuth: [] }]
const tags = ['reports']

/** Whether the caller asked for CSV (Accept names text/csv, and application/json not before it). */
function wantsCsv (request: FastifyRequest): boolean {
  const accept = (request.headers.accept ?? '').toLowerCase()
  const csv = accept.indexOf('text/csv')
  const json = accept.indexOf('application/json')
  return csv !== -1 && (json === -1 || csv < json)
}

/** /api/v1/reports: SOC 2 evidence computed from what the server holds (docs/devops/compliance.md). */
const reports: FastifyPluginAsyncTypebox = async (app) => {
  const config = managementRouteConfig(app.config)

  app.get('/api/v1/reports/access-review', {
    schema: {
      tags,
      summary: 'Access review: every agent, its access, credentials, trusts, flags and last review',
      description: 'Needs audit:read. JSON, or CSV (one line per agent) with Accept: text/csv. Flags: never_used, stale (unused for more than REVIEW_STALE_DAYS), credential_too_old (a live credential older than CREDENTIAL_MAX_AGE_DAYS), no_owner, admin_scopes, admin_granted_recently (a management scope granted since `since`, by default REVIEW_STALE_DAYS ago). Record decisions with POST /api/v1/reviews.',
      security,
      querystring: AccessReviewQuerySchema,
      response: {
        200: {
          description: 'The report',
          content: { 'application/json': { schema: AccessReviewReportSchema }, 'text/csv': { schema: Type.String() } }
        },
        ...problemResponses(400, 401, 403, 429, 503)
      }
    },
    preValidation: app.requireScopes(AdminScope.AuditRead),
    config
  }, async (request, reply) => {
    const { orgId, issuer } = request.issuerContext
    const report = await accessReview(app.sql, orgId, issuer, app.config.compliance, reviewPeriod(request.query.since, app.config.compliance))
    if (!wantsCsv(request)) return await reply.type('application/json').send(report)
    return await reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', 'attachment; filename="access-review.csv"')
      .send(accessReviewCsv(report))
  })

  app.get('/api/v1/reports/evidence', {
    schema: {
      tags,
      summary: 'SOC 2 evidence bundle, as a zip',
      description: 'Needs audit:read. The access review (JSON and CSV), the last reviews, the configuration without secrets, the key rotation history, the audit chain verification and retention status, the control mapping (CC6.1, CC6.2, CC6.3, CC6.6, CC7.2, CC7.3), manifest.json (every other file with its SHA-256) and manifest.jws (a compact JWS of manifest.json by this issuer\'s key: verify it against the JWKS). npm run evidence -- --out <dir> writes the same files.',
      security,
      response: {
        200: { description: 'A zip archive', content: { 'application/zip': { schema: Type.String({ format: 'binary' }) } } },
        ...problemResponses(401, 403, 429, 503)
      }
    },
    preValidation: app.requireScopes(AdminScope.AuditRead),
    config
  }, async (request, reply) => {
    const { orgId, issuer, keys } = request.issuerContext
    const now = new Date()
    const files = await evidenceBundle(app.sql, app.config, { orgId, issuer, keys }, now)
    return await reply
      .type('application/zip')
      .header('content-disposition', `attachment; filename="evidence-${now.toISOString().slice(0, 10)}.zip"`)
      .send(storedZip(files, now) as never)
  })
}

export default reports
