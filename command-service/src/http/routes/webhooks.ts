import { randomBytes } from 'node:crypto';
import { streamName, uuidv7 } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { handleCommand, tenantGate } from '../../app/handle-command.ts';
import { webhookDecider, type WebhookCommand } from '../../domain/webhook.ts';
import { commandMeta, sendWrite } from '../reply.ts';
import { eventType, httpUrl, ifMatchHeaders, okSchema, paramsWith, security, tenantParams, uuid, writeErrors } from '../schemas.ts';
import type { CommandService } from '../service.ts';

export const webhookStream = (tenantId: string, webhookId: string) => streamName('webhook', tenantId, webhookId);

const eventTypes = { type: 'array', minItems: 1, maxItems: 64, uniqueItems: true, items: eventType } as const;
const deliveryId = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } as const;

export async function webhookRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Params: { tenantId: string }; Body: { url: string; eventTypes: string[] } }>(
    '/v1/tenants/:tenantId/webhooks',
    {
      onRequest: svc.protect('webhook:write'),
      schema: {
        tags: ['webhooks'],
        summary:
          'Register an outbound webhook (admin and up) → its signing secret, shown once. Matching events are POSTed with Keel-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, required: ['url', 'eventTypes'], properties: { url: httpUrl, eventTypes } },
        response: {
          201: okSchema({ webhookId: uuid, secret: { type: 'string', description: 'HMAC signing secret; shown once' } }, ['webhookId', 'secret']),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const webhookId = uuidv7();
      const secret = `whsec_${randomBytes(24).toString('hex')}`;
      const r = await handleCommand(svc.commands, {
        decider: webhookDecider,
        streamId: webhookStream(tenantId, webhookId),
        command: {
          type: 'RegisterWebhook',
          data: { webhookId, url: req.body.url, eventTypes: req.body.eventTypes, secret: await svc.keyring.encryptField(tenantId, secret) },
        },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 201, { webhookId, secret }, r);
    },
  );

  const webhookParams = paramsWith({ webhookId: uuid });
  const stateResponse = {
    200: okSchema({ webhookId: uuid, status: { type: 'string' }, url: { type: 'string' }, eventTypes: { type: 'array', items: { type: 'string' } } }, [
      'webhookId',
      'status',
    ]),
    ...writeErrors,
  };
  const stateBody = (webhookId: string, s: ReturnType<typeof webhookDecider.initialState> | { status: string; url?: string; eventTypes?: string[] }) =>
    'url' in s ? { webhookId, status: s.status, url: s.url, eventTypes: s.eventTypes } : { webhookId, status: s.status };

  app.patch<{ Params: { tenantId: string; webhookId: string }; Body: { url?: string; eventTypes?: string[] } }>(
    '/v1/tenants/:tenantId/webhooks/:webhookId',
    {
      onRequest: svc.protect('webhook:write'),
      schema: {
        tags: ['webhooks'],
        summary: 'Change a webhook\'s url and/or event types (admin and up)',
        security,
        params: webhookParams,
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, minProperties: 1, properties: { url: httpUrl, eventTypes } },
        response: stateResponse,
      },
    },
    async (req, reply) => {
      const { tenantId, webhookId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const data: Extract<WebhookCommand, { type: 'UpdateWebhook' }>['data'] = { webhookId };
      if (req.body.url !== undefined) data.url = req.body.url;
      if (req.body.eventTypes !== undefined) data.eventTypes = req.body.eventTypes;
      const r = await handleCommand(svc.commands, {
        decider: webhookDecider,
        streamId: webhookStream(tenantId, webhookId),
        command: { type: 'UpdateWebhook', data },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, stateBody(webhookId, r.state), r);
    },
  );

  app.delete<{ Params: { tenantId: string; webhookId: string } }>(
    '/v1/tenants/:tenantId/webhooks/:webhookId',
    {
      onRequest: svc.protect('webhook:write'),
      schema: { tags: ['webhooks'], summary: 'Remove a webhook (admin and up)', security, params: webhookParams, headers: ifMatchHeaders, response: stateResponse },
    },
    async (req, reply) => {
      const { tenantId, webhookId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: webhookDecider,
        streamId: webhookStream(tenantId, webhookId),
        command: { type: 'RemoveWebhook', data: { webhookId } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, stateBody(webhookId, r.state), r);
    },
  );

  app.post<{ Params: { tenantId: string; webhookId: string }; Body: { deliveryIds?: string[] } }>(
    '/v1/tenants/:tenantId/webhooks/:webhookId/redrive',
    {
      onRequest: svc.protect('webhook:redrive'),
      schema: {
        tags: ['webhooks'],
        summary:
          'Redrive dead-lettered deliveries (operator and up): appends WebhookDeliveryRedriven per delivery; the webhook runner delivers them again. Without deliveryIds: every delivery dead-lettered so far',
        security,
        params: webhookParams,
        headers: ifMatchHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: { deliveryIds: { type: 'array', minItems: 1, maxItems: 1000, items: deliveryId } },
        },
        response: {
          202: okSchema({ webhookId: uuid, redriven: { type: 'array', items: { type: 'string' } } }, ['webhookId', 'redriven']),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const { tenantId, webhookId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const data: Extract<WebhookCommand, { type: 'RedriveWebhookDeliveries' }>['data'] = { webhookId };
      if (req.body.deliveryIds) data.deliveryIds = req.body.deliveryIds;
      const r = await handleCommand(svc.commands, {
        decider: webhookDecider,
        streamId: webhookStream(tenantId, webhookId),
        command: { type: 'RedriveWebhookDeliveries', data },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 202, { webhookId, redriven: r.events.map((e) => (e.data as { deliveryId: string }).deliveryId) }, r);
    },
  );
}
