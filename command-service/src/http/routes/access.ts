import { hashSecret, newApiKey, principalOf, uuidv7, type Role } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { handleCommand, tenantGate } from '../../app/handle-command.ts';
import { accessDecider } from '../../domain/access.ts';
import { commandMeta, sendWrite } from '../reply.ts';
import { ifMatchHeaders, KEY_ID, okSchema, paramsWith, role, security, tenantParams, text, USER_ID, writeErrors } from '../schemas.ts';
import { callerRole, type CommandService } from '../service.ts';
import { accessStream } from './tenants.ts';

export async function accessRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  app.post<{ Params: { tenantId: string }; Body: { name: string; role: Role } }>(
    '/v1/tenants/:tenantId/api-keys',
    {
      onRequest: svc.protect('apikey:issue'),
      schema: {
        tags: ['access'],
        summary: 'Issue an API key (owner, admin; never above your own role) → the key, shown once',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, required: ['name', 'role'], properties: { name: text(200), role } },
        response: {
          201: okSchema(
            { keyId: { type: 'string' }, apiKey: { type: 'string', description: 'keel_<id>_<secret>; shown once' }, name: { type: 'string' }, role },
            ['keyId', 'apiKey', 'name', 'role'],
          ),
          ...writeErrors,
        },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const key = newApiKey();
      const secretHash = await hashSecret(key.secret);
      const r = await handleCommand(svc.commands, {
        decider: accessDecider,
        streamId: accessStream(tenantId),
        command: {
          type: 'IssueApiKey',
          data: { keyId: key.keyId, name: req.body.name, role: req.body.role, secretHash, callerRole: callerRole(principalOf(req)) },
        },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 201, { keyId: key.keyId, apiKey: key.apiKey, name: req.body.name, role: req.body.role }, r);
    },
  );

  app.delete<{ Params: { tenantId: string; keyId: string } }>(
    '/v1/tenants/:tenantId/api-keys/:keyId',
    {
      onRequest: svc.protect('apikey:revoke'),
      schema: {
        tags: ['access'],
        summary: 'Revoke an API key (owner, admin): refused at once, in every process within a second',
        security,
        params: paramsWith({ keyId: { type: 'string', pattern: KEY_ID } }),
        headers: ifMatchHeaders,
        response: { 200: okSchema({ keyId: { type: 'string' }, revoked: { type: 'boolean' } }, ['keyId', 'revoked']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId, keyId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: accessDecider,
        streamId: accessStream(tenantId),
        command: { type: 'RevokeApiKey', data: { keyId, callerRole: callerRole(principalOf(req)) } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { keyId, revoked: true }, r);
    },
  );

  app.post<{ Params: { tenantId: string }; Body: { email: string; role: Role; userId?: string } }>(
    '/v1/tenants/:tenantId/users',
    {
      onRequest: svc.protect('user:invite'),
      schema: {
        tags: ['access'],
        summary: 'Invite a user (an SSO identity: userId is its JWT subject) with a role; the email is stored encrypted with the user\'s own key',
        security,
        params: tenantParams,
        headers: ifMatchHeaders,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['email', 'role'],
          properties: {
            email: { type: 'string', format: 'email', maxLength: 254 },
            role,
            userId: { type: 'string', pattern: USER_ID, description: 'the SSO subject; generated when absent' },
          },
        },
        response: { 201: okSchema({ userId: { type: 'string' }, role }, ['userId', 'role']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const userId = req.body.userId ?? uuidv7();
      // A personal field: encrypted with the user's own data key, so erasing the user shreds it.
      const email = await svc.keyring.encryptField(tenantId, req.body.email, { subject: userId });
      const r = await handleCommand(svc.commands, {
        decider: accessDecider,
        streamId: accessStream(tenantId),
        command: { type: 'InviteUser', data: { userId, email, role: req.body.role, callerRole: callerRole(principalOf(req)) } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 201, { userId, role: req.body.role }, r);
    },
  );

  app.post<{ Params: { tenantId: string; userId: string }; Body: { role: Role } }>(
    '/v1/tenants/:tenantId/users/:userId/roles',
    {
      onRequest: svc.protect('role:grant'),
      schema: {
        tags: ['access'],
        summary: 'Grant a role to a user (owner, admin; never above your own role)',
        security,
        params: paramsWith({ userId: { type: 'string', pattern: USER_ID } }),
        headers: ifMatchHeaders,
        body: { type: 'object', additionalProperties: false, required: ['role'], properties: { role } },
        response: { 200: okSchema({ userId: { type: 'string' }, role }, ['userId', 'role']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId, userId } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: accessDecider,
        streamId: accessStream(tenantId),
        command: { type: 'GrantRole', data: { userId, role: req.body.role, callerRole: callerRole(principalOf(req)) } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { userId, role: req.body.role }, r);
    },
  );

  app.delete<{ Params: { tenantId: string; userId: string; role: Role } }>(
    '/v1/tenants/:tenantId/users/:userId/roles/:role',
    {
      onRequest: svc.protect('role:revoke'),
      schema: {
        tags: ['access'],
        summary: 'Revoke a role from a user (owner, admin)',
        security,
        params: paramsWith({ userId: { type: 'string', pattern: USER_ID }, role }),
        headers: ifMatchHeaders,
        response: { 200: okSchema({ userId: { type: 'string' }, role }, ['userId', 'role']), ...writeErrors },
      },
    },
    async (req, reply) => {
      const { tenantId, userId, role: r0 } = req.params;
      const gate = tenantGate(svc.store, tenantId);
      const r = await handleCommand(svc.commands, {
        decider: accessDecider,
        streamId: accessStream(tenantId),
        command: { type: 'RevokeRole', data: { userId, role: r0, callerRole: callerRole(principalOf(req)) } },
        ...commandMeta(req, tenantId),
        checks: [gate],
      });
      return sendWrite(reply, 200, { userId, role: r0 }, r);
    },
  );
}
