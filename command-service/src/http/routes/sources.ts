import { randomBytes } from 'node:crypto';
import { streamName, uuidv7 } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { handleCommand, tenantGate } from '../../app/handle-command.ts';
import { sourceDecider } from '../../domain/source.ts';
import { commandMeta, sendWrite } from '../reply.ts';
import { ifMatchHeaders, okSchema, paramsWith, security, tenantParams, uuid, writeErrors } from '../schemas.ts';
import type { CommandService } from '../service.ts';

export const sourceStream = (tenantId: string, sourceId: string) => streamName('source', tenantId, sourceId);

export async function sourceRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Params: { tenantId: string }; Body: { name: string } }>(
    '/v1/tenants/:tenantId/sources',
    {
      onRequest: svc.protect('source:write'),
      schema: {
        tags: ['inbound webhooks'],
        summary:
          'Register an inbound webhook source (admin and up) → its HMAC secret, shown once. Senders POST to /v1/hooks/:tenantId/:sourceId signed with it',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$', description: 'becomes the `source` of the records it receives' },
          },
        },
        response: { 201: okSchema({ sourceId: uuid, secret: { type: 'string' }, url: { type: 'string' } }, ['sourceId', 'secret', 'url']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const sourceId = uuidv7();
      const secret = `whsec_${randomBytes(24).toString('hex')}`;
      const r = await handleCommand(svc.commands, {
        decider: sourceDecider,
        streamId: sourceStream(tenantId, sourceId),
        command: { type: 'RegisterSource', data: { sourceId, name: req.body.name, secret: await svc.keyring.encryptField(tenantId, secret) } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 201, { sourceId, secret, url: `/v1/hooks/${tenantId}/${sourceId}` }, r);
    },
  );

  app.delete<{ Params: { tenantId: string; sourceId: string } }>(
    '/v1/tenants/:tenantId/sources/:sourceId',
    {
      onRequest: svc.protect('source:write'),
      schema: {
        tags: ['inbound webhooks'],
        summary: 'Remove an inbound source (admin and up): its hooks answer 401 from then on',
        security,
        params: paramsWith({ sourceId: uuid }),
        headers: ifMatchHeaders,
        response: { 200: okSchema({ sourceId: uuid, status: { type: 'string' } }, ['sourceId', 'status']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId, sourceId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: sourceDecider,
        streamId: sourceStream(tenantId, sourceId),
        command: { type: 'RemoveSource', data: { sourceId } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { sourceId, status: r.state.status }, r);
    },
  );
}
