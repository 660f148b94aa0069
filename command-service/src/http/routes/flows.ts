import { HttpError, streamName, uuidv7, ValidationError, type Json } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import jsonata from 'jsonata';
import { handleCommand, tenantGate } from '../../app/handle-command.ts';
import { connectorDecider, type ConnectorState } from '../../domain/connector.ts';
import { flowDecider } from '../../domain/flow.ts';
import { commandMeta, sendWrite } from '../reply.ts';
import { eventType, ifMatchHeaders, okSchema, paramsWith, security, tenantParams, text, uuid, writeErrors } from '../schemas.ts';
import type { CommandService } from '../service.ts';
import { connectorStream } from './connectors.ts';

export const flowStream = (tenantId: string, flowId: string) => streamName('flow', tenantId, flowId);

const IDENT = '^[A-Za-z_][A-Za-z0-9_]{0,62}$';
const expression = { type: 'string', minLength: 1, maxLength: 20_000 } as const;
const mapping = { type: 'object', minProperties: 1, maxProperties: 200 } as const;

/**
 * A flow definition as the flow runner reads it: a trigger, then steps that each take the
 * previous one's output (the first takes the triggering event). Expressions are JSONata.
 */
export const flowDefinitionSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['trigger', 'steps'],
  properties: {
    trigger: {
      type: 'object',
      additionalProperties: false,
      required: ['eventType'],
      properties: {
        eventType,
        source: { type: 'string', minLength: 1, maxLength: 100 },
        entityType: { type: 'string', minLength: 1, maxLength: 64 },
        condition: { ...expression, description: 'JSONata predicate over the triggering event' },
      },
    },
    steps: {
      type: 'array',
      minItems: 1,
      maxItems: 20,
      items: {
        type: 'object',
        required: ['type'],
        properties: { type: { type: 'string', enum: ['transform', 'http', 'postgres'] } },
        allOf: [
          {
            if: { properties: { type: { const: 'transform' } } },
            then: {
              additionalProperties: false,
              properties: { type: {}, expression, mapping },
              oneOf: [{ required: ['expression'] }, { required: ['mapping'] }],
            },
          },
          {
            if: { properties: { type: { const: 'http' } } },
            then: {
              additionalProperties: false,
              required: ['connectorId', 'url'],
              properties: {
                type: {},
                connectorId: uuid,
                method: { type: 'string', enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'get', 'post', 'put', 'patch', 'delete', 'head'] },
                url: { type: 'string', minLength: 1, maxLength: 2048 },
                headers: {
                  type: 'object',
                  maxProperties: 50,
                  additionalProperties: { type: 'string', maxLength: 4096, pattern: '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$' },
                },
                body: expression,
                timeoutMs: { type: 'integer', minimum: 1, maximum: 120_000 },
                captureBodies: { type: 'boolean' },
              },
            },
          },
          {
            if: { properties: { type: { const: 'postgres' } } },
            then: {
              additionalProperties: false,
              required: ['connectorId', 'table', 'key'],
              properties: {
                type: {},
                connectorId: uuid,
                table: { type: 'string', pattern: IDENT },
                schema: { type: 'string', pattern: IDENT },
                key: { type: 'array', minItems: 1, maxItems: 16, items: { type: 'string', pattern: IDENT } },
                columns: { type: 'array', minItems: 1, maxItems: 200, items: { type: 'string', pattern: IDENT } },
              },
            },
          },
        ],
      },
    },
    captureBodies: { type: 'boolean' },
    retry: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxAttempts: { type: 'integer', minimum: 1, maximum: 50 },
        baseMs: { type: 'integer', minimum: 1, maximum: 3_600_000 },
        maxMs: { type: 'integer', minimum: 1, maximum: 86_400_000 },
      },
    },
  },
} as const;

type Step = { type: string; expression?: string; mapping?: Record<string, unknown>; body?: string; connectorId?: string; key?: string[]; columns?: string[] };
type Definition = { trigger: { condition?: string }; steps: Step[] };

function checkExpression(expr: string, field: string): void {
  try {
    jsonata(expr);
  } catch (e) {
    throw new ValidationError(`${field} is not a valid JSONata expression: ${(e as Error).message}`, field);
  }
}

function checkMapping(m: Record<string, unknown>, field: string): void {
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'string') checkExpression(v, `${field}.${k}`);
    else if (typeof v === 'object' && v !== null && !Array.isArray(v)) checkMapping(v as Record<string, unknown>, `${field}.${k}`);
    else throw new ValidationError(`${field}.${k} must be a JSONata expression string or an object`, `${field}.${k}`);
  }
}

/** What JSON schema cannot say: expressions parse, key columns are written, connectors exist. */
async function checkDefinition(svc: CommandService, tenantId: string, def: Definition): Promise<void> {
  const base = 'body.definition';
  if (def.trigger.condition !== undefined) checkExpression(def.trigger.condition, `${base}.trigger.condition`);
  for (const [i, s] of def.steps.entries()) {
    const f = `${base}.steps.${i}`;
    if (s.expression !== undefined) checkExpression(s.expression, `${f}.expression`);
    if (s.mapping !== undefined) checkMapping(s.mapping, `${f}.mapping`);
    if (s.body !== undefined) checkExpression(s.body, `${f}.body`);
    if (s.key && s.columns)
      for (const k of s.key) if (!s.columns.includes(k)) throw new ValidationError(`${f}.columns must include the key column ${k}`, `${f}.columns`);
  }
  const connectorIds = [...new Set(def.steps.map((s) => s.connectorId).filter((x): x is string => !!x))];
  for (const connectorId of connectorIds) {
    const events = await svc.store.readStream(connectorStream(tenantId, connectorId));
    const state = events.reduce<ConnectorState>((s, e) => connectorDecider.evolve(s, e as never), connectorDecider.initialState());
    const step = def.steps.find((s) => s.connectorId === connectorId)!;
    if (state.status === 'absent' || state.status === 'removed')
      throw new HttpError('RULE_VIOLATED', 422, `connector ${connectorId} ${state.status === 'absent' ? 'does not exist' : 'was removed'}`, {
        field: `${base}.steps.${def.steps.indexOf(step)}.connectorId`,
      });
    if (state.kind !== step.type)
      throw new HttpError('RULE_VIOLATED', 422, `connector ${connectorId} is a ${state.kind} connector, not ${step.type}`, {
        field: `${base}.steps.${def.steps.indexOf(step)}.connectorId`,
      });
  }
}

export async function flowRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Params: { tenantId: string }; Body: { name: string; definition: Definition; enabled?: boolean } }>(
    '/v1/tenants/:tenantId/flows',
    {
      onRequest: svc.protect('flow:write'),
      schema: {
        tags: ['flows'],
        summary: 'Define a flow (admin and up): publishes its version 1, enabled when `enabled` is true',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'definition'],
          properties: { name: text(200), definition: flowDefinitionSchema, enabled: { type: 'boolean', default: false } },
        },
        response: {
          201: okSchema({ flowId: uuid, version: { type: 'integer' }, enabled: { type: 'boolean' } }, ['flowId', 'version', 'enabled']),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      await checkDefinition(svc, tenantId, req.body.definition);
      const flowId = uuidv7();
      const r = await handleCommand(svc.commands, {
        decider: flowDecider,
        streamId: flowStream(tenantId, flowId),
        command: { type: 'DefineFlow', data: { flowId, name: req.body.name, definition: req.body.definition as unknown as Json, enabled: req.body.enabled ?? false } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      const s = r.state.status === 'defined' ? r.state : { version: 0, enabled: false };
      return sendWrite(reply, 201, { flowId, version: s.version, enabled: s.enabled }, r);
    },
  );

  const flowParams = paramsWith({ flowId: uuid });
  const flowResponse = (status: number) => ({
    [status]: okSchema({ flowId: uuid, version: { type: 'integer' }, enabled: { type: 'boolean' } }, ['flowId', 'version', 'enabled']),
    ...writeErrors,
  });

  app.post<{ Params: { tenantId: string; flowId: string }; Body: { definition: Definition } }>(
    '/v1/tenants/:tenantId/flows/:flowId/versions',
    {
      onRequest: svc.protect('flow:write'),
      schema: {
        tags: ['flows'],
        summary: 'Publish a new version of a flow (admin and up); the same definition as the current one publishes nothing',
        security,
        params: flowParams,
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, required: ['definition'], properties: { definition: flowDefinitionSchema } },
        response: flowResponse(201),
      },
    },
    async (req, reply) => {
      const { tenantId, flowId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      await checkDefinition(svc, tenantId, req.body.definition);
      const r = await handleCommand(svc.commands, {
        decider: flowDecider,
        streamId: flowStream(tenantId, flowId),
        command: { type: 'PublishFlowVersion', data: { flowId, definition: req.body.definition as unknown as Json } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      const s = r.state.status === 'defined' ? r.state : { version: 0, enabled: false };
      return sendWrite(reply, r.events.length ? 201 : 200, { flowId, version: s.version, enabled: s.enabled }, r);
    },
  );

  for (const action of ['enable', 'disable'] as const) {
    app.post<{ Params: { tenantId: string; flowId: string } }>(
      `/v1/tenants/:tenantId/flows/:flowId/${action}`,
      {
        onRequest: svc.protect('flow:write'),
        schema: {
          tags: ['flows'],
          summary: action === 'enable' ? 'Enable a flow (admin and up): runs start for matching events' : 'Disable a flow (admin and up)',
          security,
          params: flowParams,
          headers: ifMatchHeaders,
          body: { type: 'object', additionalProperties: false, properties: {} },
          response: flowResponse(200),
        },
      },
      async (req, reply) => {
        const { tenantId, flowId } = req.params;
        const gate = tenantGate(svc.store, tenantId);
        const r = await handleCommand(svc.commands, {
          decider: flowDecider,
          streamId: flowStream(tenantId, flowId),
          command: action === 'enable' ? { type: 'EnableFlow', data: { flowId } } : { type: 'DisableFlow', data: { flowId } },
          ...commandMeta(req, tenantId),
          checks: [gate],
        });
        const s = r.state.status === 'defined' ? r.state : { version: 0, enabled: false };
        return sendWrite(reply, 200, { flowId, version: s.version, enabled: s.enabled }, r);
      },
    );
  }
}
