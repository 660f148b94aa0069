import {
  hashSecret,
  HttpError,
  newApiKey,
  streamName,
  uuidv7,
  type NewEvent,
} from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { handleCommand, tenantStream } from '../../app/handle-command.ts';
import { accessDecider } from '../../domain/access.ts';
import { tenantDecider } from '../../domain/tenant.ts';
import { actorOf, commandMeta, sendWrite } from '../reply.ts';
import { okSchema, security, tenantParams, text, writeErrors, writeHeaders, ifMatchHeaders, uuid } from '../schemas.ts';
import type { CommandService } from '../service.ts';

export function accessStream(tenantId: string): string {
  return streamName('access', tenantId, 'root');
}

export async function tenantRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Body: { name: string } }>(
    '/v1/tenants',
    {
      onRequest: svc.protect('tenant:create'),
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (platform admin) → its id and a first owner API key, shown once',
        security,
        headers: writeHeaders,
        body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: text(200) } },
        response: {
          201: okSchema(
            { tenantId: uuid, keyId: { type: 'string' }, apiKey: { type: 'string', description: 'owner key; shown once' } },
            ['tenantId', 'keyId', 'apiKey'],
          ),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const tenantId = uuidv7();
      const key = newApiKey();
      const secretHash = await hashSecret(key.secret);
      const actor = actorOf(req);
      const created = tenantDecider.decide({ type: 'CreateTenant', data: { name: req.body.name } }, tenantDecider.initialState());
      const issued = accessDecider.decide(
        { type: 'IssueApiKey', data: { keyId: key.keyId, name: 'owner (created with the tenant)', role: 'owner', secretHash, callerRole: 'platformAdmin' } },
        accessDecider.initialState(),
      );
      const meta = (e: { type: string; data: Record<string, unknown> }): NewEvent => ({
        type: e.type,
        data: e.data,
        tenantId,
        actor,
        correlationId: req.correlationId,
      });
      // The tenant and its first owner key in one transaction: never a tenant nobody can reach.
      const r = await svc.store.appendBatch([
        { streamId: tenantStream(tenantId), events: created.map(meta), expectedRevision: 'no_stream' },
        { streamId: accessStream(tenantId), events: issued.map(meta), expectedRevision: 'no_stream' },
      ]);
      const recorded = [...(await svc.store.readStream(tenantStream(tenantId))), ...(await svc.store.readStream(accessStream(tenantId)))];
      await svc.commands.afterAppend?.(recorded);
      req.log.info({ tenantId }, 'tenant created');
      return sendWrite(reply, 201, { tenantId, keyId: key.keyId, apiKey: key.apiKey }, { revision: 0, globalPosition: r.globalPosition });
    },
  );

  const lifecycle = [
    {
      path: 'suspend',
      permission: 'tenant:suspend',
      summary: 'Suspend a tenant (platform admin): its writes are refused until reinstated',
      body: { type: 'object', additionalProperties: false, required: ['reason'], properties: { reason: text(500) } },
      command: (b: Record<string, string>) => ({ type: 'SuspendTenant' as const, data: { reason: b.reason! } }),
    },
    {
      path: 'reinstate',
      permission: 'tenant:reinstate',
      summary: 'Reinstate a suspended tenant (platform admin)',
      body: { type: 'object', additionalProperties: false, properties: {} },
      command: () => ({ type: 'ReinstateTenant' as const, data: {} }),
    },
    {
      path: 'erase',
      permission: 'tenant:erase',
      summary:
        'Erase a tenant (owner or platform admin): destroys its data keys (crypto-shredding: encrypted secrets and personal fields become unreadable), revokes all its keys; the event history stays verifiable',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['reason', 'confirm'],
        properties: { reason: text(500), confirm: { type: 'string', description: 'the tenant id again, to confirm' } },
      },
      command: (b: Record<string, string>) => ({ type: 'EraseTenant' as const, data: { reason: b.reason! } }),
    },
  ] as const;

  for (const l of lifecycle) {
    app.post<{ Params: { tenantId: string }; Body: Record<string, string> }>(
      `/v1/tenants/:tenantId/${l.path}`,
      {
        onRequest: svc.protect(l.permission),
        schema: {
          tags: ['tenants'],
          summary: l.summary,
          security,
          params: tenantParams,
          headers: ifMatchHeaders,
          body: l.body,
          response: { 200: okSchema({ tenantId: uuid, status: { type: 'string' } }, ['tenantId', 'status']), ...writeErrors },
        },
      },
      async (req, reply) => {
        const { tenantId } = req.params;
        if (l.path === 'erase' && req.body.confirm !== tenantId)
          throw new HttpError('VALIDATION_FAILED', 400, 'confirm must repeat the tenant id', { field: 'body.confirm' });
        const r = await handleCommand(svc.commands, {
          decider: tenantDecider,
          streamId: tenantStream(tenantId),
          command: l.command(req.body),
          ...commandMeta(req, tenantId),
        });
        return sendWrite(reply, 200, { tenantId, status: r.state.status }, r);
      },
    );
  }
}
