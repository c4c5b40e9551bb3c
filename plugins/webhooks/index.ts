import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { IncomingMessage, ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import { Type } from 'typebox'
import { problemResponses } from '../../schemas/common.js'
import {
  CreateWebhookBodySchema, DeliveryPageSchema, DeliveryParamsSchema, DeliverySchema, ListDeliveriesQuerySchema, UpdateWebhookBodySchema,
  WebhookListSchema, WebhookParamsSchema, WebhookSchema, WebhookWithSecretSchema
} from '../../schemas/webhooks.js'
import { AdminScope } from '../../src/scopes.js'
import { principalActor } from '../audit/public.js'
import { managementRouteConfig } from '../infra/rate-limit.js'
import { webhookService, type WebhookService } from './service.js'
import { DeliveryWorker } from './worker.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The webhook delivery worker of this replica (started when the app is ready, stopped when it closes). */
    webhookWorker: DeliveryWorker
  }
}

const security = [{ bearerAuth: [] }]
const tags = ['webhooks']

/**
 * The delivery worker, decorated on the root so routes and tests reach it. It wakes when this replica commits audit
 * events and reads on a timer for the rest (other replicas' events, retries). Closed before the connection pool
 * (registered after it), within the shutdown timeout: attempts still in flight at half of SHUTDOWN_TIMEOUT_MS are
 * aborted and left pending for the next start or another replica.
 */
export const webhookDelivery = fp(async (app) => {
  const worker = new DeliveryWorker(app)
  app.decorate('webhookWorker', worker)
  const onCommitted = (_seq: string, orgId: string): void => { worker.eventsCommitted(orgId) }
  // Every HTTP request the server receives (the capabilities' routes are registered before this plugin, so a hook
  // here would not see theirs): deliveries yield to them when they queue up.
  const onRequest = (_request: IncomingMessage, response: ServerResponse): void => { worker.requestReceived(response) }
  app.addHook('onReady', async () => {
    app.audit.notifications.on('committed', onCommitted)
    app.server.on('request', onRequest)
    worker.start()
  })
  app.addHook('onClose', async () => {
    app.audit.notifications.off('committed', onCommitted)
    app.server.off('request', onRequest)
    await worker.stop(Math.min(app.config.webhooks.timeoutMs, app.config.shutdownTimeoutMs / 2))
  })
}, { name: 'webhook-delivery', dependencies: ['postgres', 'audit', 'metrics', 'keys'] })

/**
 * /api/v1/webhooks: subscriptions to the audit trail, delivered signed (Standard Webhooks). Reading needs
 * webhooks:read. Creating or changing a subscription, or redelivering, makes audit events flow to a URL the caller
 * chooses: it needs webhooks:write and audit:read, the authority to read those events at all. Deleting, rotating
 * the secret and testing need webhooks:write.
 */
const webhooks: FastifyPluginAsyncTypebox = async (app) => {
  const service: WebhookService = webhookService(app, () => { app.webhookWorker.wake() })
  const config = managementRouteConfig(app.config)
  const read = app.requireScopes(AdminScope.WebhooksRead)
  const write = app.requireScopes(AdminScope.WebhooksWrite)
  const subscribe = app.requireScopes(AdminScope.WebhooksWrite, AdminScope.AuditRead)

  app.post('/api/v1/webhooks', {
    schema: {
      tags,
      summary: 'Subscribe a URL to audit events',
      description: 'Deliveries start with the events committed after this call. The signing secret (whsec_…) is in this response only. Needs webhooks:write and audit:read. An unknown event type is a 400 listing the valid ones; a URL that is not https, or names a private, loopback or link-local address, is a 400 (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS=true).',
      security,
      body: CreateWebhookBodySchema,
      response: { 201: WebhookWithSecretSchema, ...problemResponses(400, 401, 403, 413, 415, 429, 503) }
    },
    preValidation: subscribe,
    config
  }, async (request, reply) => {
    const webhook = await service.create(request.issuerContext.orgId, request.body, principalActor(request))
    return reply.code(201).header('location', `/api/v1/webhooks/${webhook.id}`).send(webhook)
  })

  app.get('/api/v1/webhooks', {
    schema: { tags, summary: 'List webhook subscriptions', description: 'Oldest first. Never a secret.', security, response: { 200: WebhookListSchema, ...problemResponses(401, 403, 429, 503) } },
    preValidation: read,
    config
  }, async (request) => await service.list(request.issuerContext.orgId))

  app.get('/api/v1/webhooks/:id', {
    schema: { tags, summary: 'Get a webhook subscription', security, params: WebhookParamsSchema, response: { 200: WebhookSchema, ...problemResponses(400, 401, 403, 404, 429, 503) } },
    preValidation: read,
    config
  }, async (request) => await service.get(request.issuerContext.orgId, request.params.id))

  app.patch('/api/v1/webhooks/:id', {
    schema: {
      tags,
      summary: 'Change, disable or re-enable a webhook subscription',
      description: 'Only the members given change. enabled false stops deliveries; enabled true resumes them where they stopped (pending deliveries first, then every event since) and clears disabled_reason. Needs webhooks:write and audit:read.',
      security,
      params: WebhookParamsSchema,
      body: UpdateWebhookBodySchema,
      response: { 200: WebhookSchema, ...problemResponses(400, 401, 403, 404, 413, 415, 429, 503) }
    },
    preValidation: subscribe,
    config
  }, async (request) => await service.update(request.issuerContext.orgId, request.params.id, request.body, principalActor(request)))

  app.delete('/api/v1/webhooks/:id', {
    schema: {
      tags,
      summary: 'Delete a webhook subscription',
      description: 'Its deliveries go with it; pending ones are never sent.',
      security,
      params: WebhookParamsSchema,
      response: { 204: Type.Null({ description: 'Deleted' }), ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => {
    await service.remove(request.issuerContext.orgId, request.params.id, principalActor(request))
    return await reply.code(204).send(null)
  })

  app.post('/api/v1/webhooks/:id/rotate-secret', {
    schema: {
      tags,
      summary: 'Rotate the signing secret',
      description: 'The new secret is in this response only. For 24 hours (until previous_secret_expires_at) every delivery carries two signatures, by the new and by the previous secret, so the receiver switches at its own pace.',
      security,
      params: WebhookParamsSchema,
      response: { 200: WebhookWithSecretSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request) => await service.rotateSecret(request.issuerContext.orgId, request.params.id, principalActor(request)))

  app.post('/api/v1/webhooks/:id/test', {
    schema: {
      tags,
      summary: 'Send a webhook.test event',
      description: 'Queued after the subscription\'s pending deliveries; follow it in the deliveries list. 409 when the subscription is disabled.',
      security,
      params: WebhookParamsSchema,
      response: { 202: DeliverySchema, ...problemResponses(400, 401, 403, 404, 409, 429, 503) }
    },
    preValidation: write,
    config
  }, async (request, reply) => await reply.code(202).send(await service.sendTest(request.issuerContext.orgId, request.params.id)))

  app.get('/api/v1/webhooks/:id/deliveries', {
    schema: {
      tags,
      summary: 'List a subscription\'s deliveries',
      description: 'Newest first, keyset-paginated: each delivery with its event, status, attempts, last response code and next attempt.',
      security,
      params: WebhookParamsSchema,
      querystring: ListDeliveriesQuerySchema,
      response: { 200: DeliveryPageSchema, ...problemResponses(400, 401, 403, 404, 429, 503) }
    },
    preValidation: read,
    config
  }, async (request) => await service.deliveries(request.issuerContext.orgId, request.params.id, request.query))

  app.post('/api/v1/webhooks/:id/deliveries/:delivery_id/redeliver', {
    schema: {
      tags,
      summary: 'Deliver again',
      description: 'Queues a new delivery with the same webhook-id and body, after the pending ones. 409 while the delivery is still pending or the subscription is disabled. Needs webhooks:write and audit:read.',
      security,
      params: DeliveryParamsSchema,
      response: { 202: DeliverySchema, ...problemResponses(400, 401, 403, 404, 409, 429, 503) }
    },
    preValidation: subscribe,
    config
  }, async (request, reply) => await reply.code(202).send(await service.redeliver(request.issuerContext.orgId, request.params.id, request.params.delivery_id)))
}

export default webhooks
