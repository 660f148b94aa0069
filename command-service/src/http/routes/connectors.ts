import { uuidv7, ValidationError, type ConnectorKind, type Json } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { handleCommand, tenantGate } from '../../app/handle-command.ts';
import { connectorDecider, type ConnectorCommand } from '../../domain/connector.ts';
import { commandMeta, sendWrite } from '../reply.ts';
import { httpUrl, ifMatchHeaders, okSchema, paramsWith, security, tenantParams, text, uuid, writeErrors } from '../schemas.ts';
import type { CommandService } from '../service.ts';
import { streamName } from '@keel/shared-events';

export const connectorStream = (tenantId: string, connectorId: string) => streamName('connector', tenantId, connectorId);

const IDENT = '^[A-Za-z_][A-Za-z0-9_]{0,62}$';
const headerMap = {
  type: 'object',
  maxProperties: 50,
  propertyNames: { pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$" },
  // Header values: visible text and tabs only (no CR/LF header injection, no terminal escapes).
  additionalProperties: { type: 'string', maxLength: 4096, pattern: '^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f]*$' },
} as const;

/** http connector config, as the connector runner reads it (see connector-runners). */
export const httpConnectorConfig = {
  type: 'object',
  additionalProperties: false,
  properties: {
    baseUrl: httpUrl,
    headers: headerMap,
    timeoutMs: { type: 'integer', minimum: 1, maximum: 120_000 },
    auth: {
      type: 'object',
      additionalProperties: false,
      required: ['type'],
      properties: {
        type: { type: 'string', enum: ['none', 'apiKey', 'bearer', 'basic', 'oauth2'] },
        header: { type: 'string', maxLength: 128 },
        query: { type: 'string', maxLength: 128 },
        username: { type: 'string', maxLength: 256 },
        tokenUrl: httpUrl,
        clientId: { type: 'string', maxLength: 512 },
        scope: { type: 'string', maxLength: 1024 },
        audience: { type: 'string', maxLength: 1024 },
        clientAuth: { type: 'string', enum: ['basic', 'body'] },
      },
    },
  },
} as const;

export const postgresConnectorConfig = {
  type: 'object',
  additionalProperties: false,
  properties: {
    connectionString: { type: 'string', pattern: '^postgres(ql)?://', maxLength: 2048, description: 'without the password (that goes in credentials)' },
    schema: { type: 'string', pattern: IDENT },
  },
} as const;

/** A JSON object of strings, or the one secret string the auth scheme needs. Stored encrypted. */
const credentials = {
  anyOf: [
    { type: 'string', minLength: 1, maxLength: 8192 },
    { type: 'object', minProperties: 1, maxProperties: 20, additionalProperties: { type: 'string', maxLength: 8192 } },
  ],
  description: 'stored encrypted with the tenant\'s data key; never returned',
} as const;

function assertNoPasswordInConfig(kind: ConnectorKind, config: Record<string, unknown>): void {
  if (kind !== 'postgres' || typeof config.connectionString !== 'string') return;
  let password = '';
  try {
    password = new URL(config.connectionString).password;
  } catch {
    throw new ValidationError('config.connectionString must be a postgres:// URL', 'body.config.connectionString');
  }
  if (password)
    throw new ValidationError('put the password in credentials (stored encrypted), not in config.connectionString', 'body.config.connectionString');
}

async function encryptCredentials(svc: CommandService, tenantId: string, c: unknown): Promise<string> {
  return svc.keyring.encryptField(tenantId, typeof c === 'string' ? c : JSON.stringify(c));
}

export async function connectorRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Params: { tenantId: string }; Body: { kind: ConnectorKind; name: string; config?: Record<string, unknown>; credentials?: unknown } }>(
    '/v1/tenants/:tenantId/connectors',
    {
      onRequest: svc.protect('connector:write'),
      schema: {
        tags: ['connectors'],
        summary: 'Install a connector (admin and up): an http API or a postgres database that flow steps write to',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['kind', 'name'],
          properties: {
            kind: { type: 'string', enum: ['http', 'postgres'] },
            name: text(200),
            config: { type: 'object' },
            credentials,
          },
          allOf: [
            { if: { properties: { kind: { const: 'http' } } }, then: { properties: { config: httpConnectorConfig } } },
            { if: { properties: { kind: { const: 'postgres' } } }, then: { properties: { config: postgresConnectorConfig } } },
          ],
        },
        response: { 201: okSchema({ connectorId: uuid, kind: { type: 'string' }, status: { type: 'string' } }, ['connectorId']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const config = req.body.config ?? {};
      assertNoPasswordInConfig(req.body.kind, config);
      const gate = tenantGate(svc.store, tenantId);
      const connectorId = uuidv7();
      const data: Extract<ConnectorCommand, { type: 'InstallConnector' }>['data'] = {
        connectorId,
        kind: req.body.kind,
        name: req.body.name,
        config: config as Json,
      };
      if (req.body.credentials !== undefined) data.credentials = await encryptCredentials(svc, tenantId, req.body.credentials);
      const r = await handleCommand(svc.commands, {
        decider: connectorDecider,
        streamId: connectorStream(tenantId, connectorId),
        command: { type: 'InstallConnector', data },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 201, { connectorId, kind: req.body.kind, status: r.state.status }, r);
    },
  );

  const connectorParams = paramsWith({ connectorId: uuid });
  const stateResponse = { 200: okSchema({ connectorId: uuid, status: { type: 'string' } }, ['connectorId', 'status']), ...writeErrors };

  app.post<{ Params: { tenantId: string; connectorId: string }; Body: { credentials: unknown } }>(
    '/v1/tenants/:tenantId/connectors/:connectorId/credentials',
    {
      onRequest: svc.protect('connector:write'),
      schema: {
        tags: ['connectors'],
        summary: 'Rotate a connector\'s credentials (admin and up)',
        security,
        params: connectorParams,
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, required: ['credentials'], properties: { credentials } },
        response: stateResponse,
      },
    },
    async (req, reply) => {
      const { tenantId, connectorId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const enc = await encryptCredentials(svc, tenantId, req.body.credentials);
      const r = await handleCommand(svc.commands, {
        decider: connectorDecider,
        streamId: connectorStream(tenantId, connectorId),
        command: { type: 'RotateConnectorCredentials', data: { connectorId, credentials: enc } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { connectorId, status: r.state.status }, r);
    },
  );

  const actions = [
    { path: 'pause', summary: 'Pause a connector (admin and up): its steps wait instead of running', type: 'PauseConnector' },
    { path: 'resume', summary: 'Resume a paused connector (admin and up)', type: 'ResumeConnector' },
  ] as const;
  for (const a of actions) {
    app.post<{ Params: { tenantId: string; connectorId: string }; Body: { reason?: string } }>(
      `/v1/tenants/:tenantId/connectors/:connectorId/${a.path}`,
      {
        onRequest: svc.protect('connector:write'),
        schema: {
          tags: ['connectors'],
          summary: a.summary,
          security,
          params: connectorParams,
          headers: ifMatchHeaders,
          body:
            a.type === 'PauseConnector'
              ? { type: 'object', additionalProperties: false, properties: { reason: text(500) } }
              : { type: 'object', additionalProperties: false, properties: {} },
          response: stateResponse,
        },
      },
      async (req, reply) => {
        const { tenantId, connectorId } = req.params;
        const gate = tenantGate(svc.store, tenantId);
        const command: ConnectorCommand =
          a.type === 'PauseConnector'
            ? { type: 'PauseConnector', data: req.body.reason === undefined ? { connectorId } : { connectorId, reason: req.body.reason } }
            : { type: 'ResumeConnector', data: { connectorId } };
        const r = await handleCommand(svc.commands, {
          decider: connectorDecider,
          streamId: connectorStream(tenantId, connectorId),
          command,
          ...commandMeta(req, tenantId),
          checks: [gate],
        });
        return sendWrite(reply, 200, { connectorId, status: r.state.status }, r);
      },
    );
  }

  app.delete<{ Params: { tenantId: string; connectorId: string } }>(
    '/v1/tenants/:tenantId/connectors/:connectorId',
    {
      onRequest: svc.protect('connector:write'),
      schema: {
        tags: ['connectors'],
        summary: 'Remove a connector (admin and up)',
        security,
        params: connectorParams,
        headers: ifMatchHeaders,
        response: stateResponse,
      },
    },
    async (req, reply) => {
      const { tenantId, connectorId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: connectorDecider,
        streamId: connectorStream(tenantId, connectorId),
        command: { type: 'RemoveConnector', data: { connectorId } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { connectorId, status: r.state.status }, r);
    },
  );
}
