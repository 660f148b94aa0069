import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t?.close());

describe('tenants', () => {
  it('the platform admin creates a tenant: TenantCreated and an owner ApiKeyIssued in one go, the key works at once', async () => {
    const before = await t.head();
    const r = await t.call('POST', '/v1/tenants', { name: 'Acme GmbH' });
    expect(r.statusCode).toBe(201);
    const body = r.json();
    expect(body).toMatchObject({ tenantId: expect.stringMatching(/^[0-9a-f-]{36}$/), keyId: expect.any(String), apiKey: expect.stringMatching(/^keel_[0-9a-f]{20}_[0-9a-f]{48}$/) });
    expect(body.globalPosition).toBeGreaterThan(before);
    const events = await t.events(before);
    expect(events.map((e) => [e.type, e.streamId])).toEqual([
      ['TenantCreated', `tenant-${body.tenantId}-root`],
      ['ApiKeyIssued', `access-${body.tenantId}-root`],
    ]);
    expect(events[0]!.data).toEqual({ name: 'Acme GmbH' });
    // stored only as a slow hash, never the secret
    const issued = events[1]!.data as { secretHash: string; role: string };
    expect(issued.role).toBe('owner');
    expect(issued.secretHash).toMatch(/^scrypt\$/);
    expect(JSON.stringify(events)).not.toContain(body.apiKey.split('_')[2]);
    expect(events.every((e) => e.actor.kind === 'system' && e.actor.id === 'platform-admin')).toBe(true);
    // the owner key works right away
    const ok = await t.call('POST', `/v1/tenants/${body.tenantId}/api-keys`, { name: 'ci', role: 'operator' }, {}, body.apiKey);
    expect(ok.statusCode).toBe(201);
  });

  it('only the platform admin creates tenants', async () => {
    const { apiKey } = await t.createTenant();
    const before = await t.head();
    const r = await t.call('POST', '/v1/tenants', { name: 'Evil' }, {}, apiKey);
    expect(r.statusCode).toBe(403);
    expect(errorOf(r).code).toBe('FORBIDDEN');
    // the refusal is audited in the caller's own trail, and nothing else is stored
    const after = await t.events(before);
    expect(after.map((e) => e.type)).toEqual(['AccessDenied']);
  });

  it('suspends (writes refused, 403 TENANT_SUSPENDED), reinstates, and keeps lifecycle to the platform admin', async () => {
    const { tenantId, apiKey } = await t.createTenant();
    const byOwner = await t.call('POST', `/v1/tenants/${tenantId}/suspend`, { reason: 'x' }, {}, apiKey);
    expect(byOwner.statusCode).toBe(403);

    const s = await t.call('POST', `/v1/tenants/${tenantId}/suspend`, { reason: 'invoice unpaid' });
    expect(s.statusCode).toBe(200);
    expect(s.json()).toMatchObject({ tenantId, status: 'suspended' });

    const before = await t.head();
    const refused = await t.call('POST', `/v1/tenants/${tenantId}/connectors`, { kind: 'http', name: 'x', config: {} }, {}, apiKey);
    expect(refused.statusCode).toBe(403);
    expect(errorOf(refused).code).toBe('TENANT_SUSPENDED');
    const ingest = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 'a', entityType: 'b', externalId: 'c', payload: {} }], {}, apiKey);
    expect(ingest.statusCode).toBe(403);
    expect(await t.head()).toBe(before);

    // suspending again changes nothing
    const again = await t.call('POST', `/v1/tenants/${tenantId}/suspend`, { reason: 'again' });
    expect(again.statusCode).toBe(200);
    expect(await t.head()).toBe(before);

    const re = await t.call('POST', `/v1/tenants/${tenantId}/reinstate`, {});
    expect(re.statusCode).toBe(200);
    expect(re.json().status).toBe('active');
    const works = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 'a', entityType: 'b', externalId: 'c', payload: {} }], {}, apiKey);
    expect(works.statusCode).toBe(200);
  });

  it('erasing a tenant needs the id repeated, shreds its data keys and revokes its keys; its history stays', async () => {
    const { tenantId, apiKey } = await t.createTenant('Doomed');
    const hook = await t.call('POST', `/v1/tenants/${tenantId}/webhooks`, { url: 'https://example.test/h', eventTypes: ['RecordIngested'] }, {}, apiKey);
    expect(hook.statusCode).toBe(201);
    const registered = (await t.events()).find((e) => e.type === 'WebhookEndpointRegistered' && e.tenantId === tenantId)!;
    const encrypted = (registered.data as { secret: string }).secret;
    expect(await t.svc.keyring.decryptField(tenantId, encrypted)).toBe(hook.json().secret);

    const noConfirm = await t.call('POST', `/v1/tenants/${tenantId}/erase`, { reason: 'gdpr', confirm: 'nope' }, {}, apiKey);
    expect(noConfirm.statusCode).toBe(400);
    const r = await t.call('POST', `/v1/tenants/${tenantId}/erase`, { reason: 'gdpr', confirm: tenantId }, {}, apiKey);
    expect(r.statusCode).toBe(200);
    expect(r.json().status).toBe('erased');

    await expect(t.svc.keyring.decryptField(tenantId, encrypted)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    const dead = await t.call('POST', `/v1/tenants/${tenantId}/api-keys`, { name: 'x', role: 'viewer' }, {}, apiKey);
    expect(dead.statusCode).toBe(401);
    expect(errorOf(dead).code).toBe('KEY_REVOKED');
    const admin = await t.call('POST', `/v1/tenants/${tenantId}/connectors`, { kind: 'http', name: 'x' });
    expect(admin.statusCode).toBe(410);
    expect(errorOf(admin).code).toBe('TENANT_ERASED');
    // the events are all still there
    const types = (await t.events()).filter((e) => e.tenantId === tenantId).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['TenantCreated', 'ApiKeyIssued', 'WebhookEndpointRegistered', 'TenantErased']));
  });
});

describe('API keys and roles', () => {
  it('issues keys by role; a revoked key is refused on the very next request', async () => {
    const { tenantId, apiKey: owner } = await t.createTenant();
    const op = await t.issueKey(tenantId, 'operator', owner);
    const ok = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 's', entityType: 'e', externalId: '1', payload: {} }], {}, op.apiKey);
    expect(ok.statusCode).toBe(200);

    const rev = await t.call('DELETE', `/v1/tenants/${tenantId}/api-keys/${op.keyId}`, undefined, {}, owner);
    expect(rev.statusCode).toBe(200);
    expect(rev.json()).toMatchObject({ keyId: op.keyId, revoked: true });
    const before = await t.head();
    const refused = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 's', entityType: 'e', externalId: '2', payload: {} }], {}, op.apiKey);
    expect(refused.statusCode).toBe(401);
    expect(errorOf(refused)).toEqual({ code: 'KEY_REVOKED', message: 'this API key was revoked' });
    // nothing stored but the audit record of the refusal
    const after = await t.events(before);
    expect(after.map((e) => [e.type, (e.data as { reason?: string }).reason])).toEqual([['AccessDenied', 'revoked key']]);
  });

  it('a revocation reaches another process within a second (no stale cache beyond it)', async () => {
    const { tenantId, apiKey: owner } = await t.createTenant();
    const viewer = await t.issueKey(tenantId, 'operator', owner);
    const other = await t.restart(); // a second app: its own authenticator and caches
    const use = () =>
      other.inject({
        method: 'POST',
        url: `/v1/tenants/${tenantId}/ingest`,
        headers: { authorization: `Bearer ${viewer.apiKey}`, 'content-type': 'application/json' },
        payload: JSON.stringify([{ source: 's', entityType: 'e', externalId: 'x', payload: {} }]),
      });
    expect((await use()).statusCode).toBe(200); // cached as valid in the other process
    await t.call('DELETE', `/v1/tenants/${tenantId}/api-keys/${viewer.keyId}`, undefined, {}, owner);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await use()).statusCode).toBe(401);
  });

  it('roles: viewer and auditor cannot write, operator ingests but cannot define integrations, admin cannot mint owners', async () => {
    const { tenantId, apiKey: owner } = await t.createTenant();
    const keys = {
      admin: await t.issueKey(tenantId, 'admin', owner),
      operator: await t.issueKey(tenantId, 'operator', owner),
      auditor: await t.issueKey(tenantId, 'auditor', owner),
      viewer: await t.issueKey(tenantId, 'viewer', owner),
    };
    const record = [{ source: 's', entityType: 'e', externalId: '1', payload: {} }];
    const expectations: [keyof typeof keys, string, string, unknown, number][] = [
      ['viewer', 'POST', 'ingest', record, 403],
      ['auditor', 'POST', 'ingest', record, 403],
      ['operator', 'POST', 'ingest', record, 200],
      ['operator', 'POST', 'connectors', { kind: 'http', name: 'x' }, 403],
      ['operator', 'POST', 'api-keys', { name: 'x', role: 'viewer' }, 403],
      ['admin', 'POST', 'connectors', { kind: 'http', name: 'x' }, 201],
      ['admin', 'POST', 'api-keys', { name: 'x', role: 'operator' }, 201],
    ];
    for (const [who, method, path, body, status] of expectations) {
      const r = await t.call(method, `/v1/tenants/${tenantId}/${path}`, body, {}, keys[who].apiKey);
      expect([who, path, r.statusCode]).toEqual([who, path, status]);
      if (status === 403) expect(errorOf(r).code).toBe('FORBIDDEN');
    }
    const tooHigh = await t.call('POST', `/v1/tenants/${tenantId}/api-keys`, { name: 'x', role: 'owner' }, {}, keys.admin.apiKey);
    expect(tooHigh.statusCode).toBe(403);
    expect(errorOf(tooHigh).code).toBe('ROLE_TOO_HIGH');
    const revokeOwner = await t.call('DELETE', `/v1/tenants/${tenantId}/api-keys/${(await t.events()).find((e) => e.type === 'ApiKeyIssued' && e.tenantId === tenantId)!.data.keyId}`, undefined, {}, keys.admin.apiKey);
    expect(revokeOwner.statusCode).toBe(403);
  });

  it('the last owner key cannot be revoked (422 LAST_OWNER); with a second owner it can', async () => {
    const { tenantId, apiKey: owner, keyId } = await t.createTenant();
    const r = await t.call('DELETE', `/v1/tenants/${tenantId}/api-keys/${keyId}`, undefined, {}, owner);
    expect(r.statusCode).toBe(422);
    expect(errorOf(r).code).toBe('LAST_OWNER');
    const second = await t.issueKey(tenantId, 'owner', owner);
    const ok = await t.call('DELETE', `/v1/tenants/${tenantId}/api-keys/${keyId}`, undefined, {}, second.apiKey);
    expect(ok.statusCode).toBe(200);
  });

  it('invites users with an encrypted email, grants and revokes roles', async () => {
    const { tenantId, apiKey: owner } = await t.createTenant();
    const inv = await t.call('POST', `/v1/tenants/${tenantId}/users`, { email: 'ada@example.test', role: 'viewer', userId: 'auth0|ada' }, {}, owner);
    expect(inv.statusCode).toBe(201);
    const ev = (await t.events()).find((e) => e.type === 'UserInvited' && e.tenantId === tenantId)!;
    const email = (ev.data as { email: string }).email;
    expect(email).not.toContain('ada@example.test');
    expect(await t.svc.keyring.decryptField(tenantId, email)).toBe('ada@example.test');
    // erasing the data subject shreds the email only
    await t.svc.keyring.destroySubjectKey(tenantId, 'auth0|ada');
    await expect(t.svc.keyring.decryptField(tenantId, email)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });

    const g = await t.call('POST', `/v1/tenants/${tenantId}/users/auth0|ada/roles`, { role: 'operator' }, {}, owner);
    expect(g.statusCode).toBe(200);
    const rv = await t.call('DELETE', `/v1/tenants/${tenantId}/users/auth0|ada/roles/viewer`, undefined, {}, owner);
    expect(rv.statusCode).toBe(200);
    const roles = await t.runtime.pool.query('select role, granted from keel_auth_user_roles where tenant_id = $1 order by role', [tenantId]);
    expect(roles.rows).toEqual([
      { role: 'operator', granted: true },
      { role: 'viewer', granted: false },
    ]);
    const unknown = await t.call('POST', `/v1/tenants/${tenantId}/users/nobody/roles`, { role: 'viewer' }, {}, owner);
    expect(unknown.statusCode).toBe(404);
  });
});

describe('tenant isolation', () => {
  it('a key of one tenant gets 404 on another tenant — the same answer as for a tenant that does not exist — and the attempt lands in its own trail', async () => {
    const a = await t.createTenant('A');
    const b = await t.createTenant('B');
    const before = await t.head();
    const cross = await t.call('POST', `/v1/tenants/${b.tenantId}/connectors`, { kind: 'http', name: 'steal' }, {}, a.apiKey);
    const missing = await t.call('POST', `/v1/tenants/01a2c0de-0000-7000-8000-000000000000/connectors`, { kind: 'http', name: 'x' }, {}, a.apiKey);
    expect(cross.statusCode).toBe(404);
    expect(missing.statusCode).toBe(404);
    expect(cross.body).toBe(missing.body);
    expect(errorOf(cross)).toEqual({ code: 'NOT_FOUND', message: 'tenant not found' });

    const after = await t.events(before);
    expect(after).toHaveLength(2);
    for (const e of after) {
      expect(e.type).toBe('AccessDenied');
      expect(e.tenantId).toBe(a.tenantId); // the caller's trail, not the target's
      expect(e.streamId).toBe(`access-${a.tenantId}-denials`);
      expect(e.actor).toEqual({ kind: 'apiKey', id: a.keyId });
    }
    expect(after[0]!.data).toEqual({ keyId: a.keyId, method: 'POST', path: `/v1/tenants/${b.tenantId}/connectors`, targetTenantId: b.tenantId, reason: 'cross-tenant' });
    // nothing at all in B
    expect(after.some((e) => e.tenantId === b.tenantId)).toBe(false);
  });

  it('the platform admin gets 404 for a tenant that does not exist', async () => {
    const r = await t.call('POST', `/v1/tenants/01a2c0de-0000-7000-8000-000000000000/api-keys`, { name: 'x', role: 'viewer' });
    expect(r.statusCode).toBe(404);
    expect(errorOf(r)).toEqual({ code: 'NOT_FOUND', message: 'tenant not found' });
  });
});
