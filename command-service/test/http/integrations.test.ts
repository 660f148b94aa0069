import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

let t: TestService;
let tenantId: string;
let owner: string;
beforeAll(async () => {
  t = await startTestService();
  ({ tenantId, apiKey: owner } = await t.createTenant());
});
afterAll(async () => t?.close());

const post = (path: string, body?: unknown, headers: Record<string, string> = {}) => t.call('POST', `/v1/tenants/${tenantId}${path}`, body, headers, owner);

describe('connectors', () => {
  it('installs with encrypted credentials, rotates, pauses, resumes, removes', async () => {
    const before = await t.head();
    const r = await post('/connectors', {
      kind: 'http',
      name: 'CRM',
      config: { baseUrl: 'https://crm.example.test/api', auth: { type: 'bearer' }, timeoutMs: 5000 },
      credentials: { token: 's3cr3t-token' },
    });
    expect(r.statusCode).toBe(201);
    const { connectorId, revision, globalPosition } = r.json();
    expect(revision).toBe(0);
    expect(r.headers.etag).toBe('"0"');
    const [installed] = await t.events(before);
    expect(installed).toMatchObject({ type: 'ConnectorInstalled', streamId: `connector-${tenantId}-${connectorId}`, globalPosition });
    const data = installed!.data as { credentials: string; config: unknown };
    expect(data.config).toEqual({ baseUrl: 'https://crm.example.test/api', auth: { type: 'bearer' }, timeoutMs: 5000 });
    expect(data.credentials).not.toContain('s3cr3t');
    expect(JSON.parse(await t.svc.keyring.decryptField(tenantId, data.credentials))).toEqual({ token: 's3cr3t-token' });

    expect((await post(`/connectors/${connectorId}/credentials`, { credentials: 'new-token' })).json()).toMatchObject({ revision: 1, status: 'active' });
    expect((await post(`/connectors/${connectorId}/pause`, { reason: 'maintenance' })).json()).toMatchObject({ revision: 2, status: 'paused' });
    // without a body too, and idempotent: nothing new
    expect((await post(`/connectors/${connectorId}/pause`)).json()).toMatchObject({ revision: 2, status: 'paused' });
    expect((await post(`/connectors/${connectorId}/resume`)).json()).toMatchObject({ revision: 3, status: 'active' });
    const del = await t.call('DELETE', `/v1/tenants/${tenantId}/connectors/${connectorId}`, undefined, {}, owner);
    expect(del.json()).toMatchObject({ revision: 4, status: 'removed' });
    const gone = await post(`/connectors/${connectorId}/resume`);
    expect(gone.statusCode).toBe(410);
    expect(errorOf(gone).code).toBe('GONE');
    expect((await t.events(before)).map((e) => e.type)).toEqual([
      'ConnectorInstalled',
      'ConnectorCredentialsRotated',
      'ConnectorPaused',
      'ConnectorResumed',
      'ConnectorRemoved',
    ]);
  });

  it('validates config per kind and keeps passwords out of config', async () => {
    const before = await t.head();
    const bad = [
      { kind: 'http', name: 'x', config: { baseUrl: 'ftp://x' } },
      { kind: 'http', name: 'x', config: { auth: { type: 'magic' } } },
      { kind: 'http', name: 'x', config: { connectionString: 'postgres://a@b/c' } },
      { kind: 'postgres', name: 'x', config: { baseUrl: 'https://x.test' } },
      { kind: 'postgres', name: 'x', config: { connectionString: 'postgres://u:pw@db.test/app' } },
      { kind: 'smtp', name: 'x' },
      { kind: 'http', name: 'x', credentials: 42 },
    ];
    for (const body of bad) {
      const r = await post('/connectors', body);
      expect([JSON.stringify(body), r.statusCode]).toEqual([JSON.stringify(body), 400]);
      expect(errorOf(r).code).toBe('VALIDATION_FAILED');
    }
    expect(await t.head()).toBe(before);
    const ok = await post('/connectors', { kind: 'postgres', name: 'warehouse', config: { connectionString: 'postgres://u@db.test/app', schema: 'sync' }, credentials: { password: 'pw' } });
    expect(ok.statusCode).toBe(201);
  });

  it('unknown connector → 404', async () => {
    const r = await post('/connectors/01a2c0de-0000-7000-8000-000000000000/pause');
    expect(r.statusCode).toBe(404);
  });
});

describe('flows', () => {
  it('defines (publishing v1), publishes v2, enables, disables; checks expressions and referenced connectors', async () => {
    const conn = (await post('/connectors', { kind: 'postgres', name: 'wh', config: {} })).json().connectorId as string;
    const definition = {
      trigger: { eventType: 'RecordIngested', source: 'shop', entityType: 'order' },
      steps: [
        { type: 'transform', mapping: { id: 'data.externalId', total: 'data.payload.total' } },
        { type: 'postgres', connectorId: conn, table: 'orders', key: ['id'] },
      ],
    };
    const before = await t.head();
    const r = await post('/flows', { name: 'orders to warehouse', definition });
    expect(r.statusCode).toBe(201);
    const { flowId } = r.json();
    expect(r.json()).toMatchObject({ version: 1, enabled: false, revision: 1 });
    expect((await t.events(before)).map((e) => [e.type, (e.data as { version?: number }).version])).toEqual([
      ['FlowDefined', undefined],
      ['FlowVersionPublished', 1],
    ]);

    const v2 = { ...definition, trigger: { ...definition.trigger, condition: 'data.payload.total > 100' } };
    const p = await post(`/flows/${flowId}/versions`, { definition: v2 });
    expect(p.statusCode).toBe(201);
    expect(p.json()).toMatchObject({ version: 2 });
    const same = await post(`/flows/${flowId}/versions`, { definition: v2 });
    expect(same.statusCode).toBe(200);
    expect(same.json()).toMatchObject({ version: 2, revision: 2 });
    expect((await post(`/flows/${flowId}/enable`)).json()).toMatchObject({ enabled: true, revision: 3 });
    expect((await post(`/flows/${flowId}/disable`, {})).json()).toMatchObject({ enabled: false, revision: 4 });
  });

  it('refuses bad definitions, naming the field; nothing stored', async () => {
    const before = await t.head();
    const cases: [unknown, number, RegExp][] = [
      [{ trigger: { eventType: 'NoSuchEvent' }, steps: [{ type: 'transform', expression: '$' }] }, 400, /trigger/],
      [{ trigger: { eventType: 'RecordIngested' }, steps: [] }, 400, /steps/],
      [{ trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'transform', expression: 'data.(' }] }, 400, /steps\.0\.expression/],
      [{ trigger: { eventType: 'RecordIngested', condition: '$$$ ++' }, steps: [{ type: 'transform', expression: '$' }] }, 400, /condition/],
      [{ trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'transform', expression: '$', extra: 1 }] }, 400, /steps/],
      [{ trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'postgres', connectorId: '01a2c0de-0000-7000-8000-000000000000', table: 'x', key: ['id'] }] }, 422, /connectorId/],
      [{ trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'postgres', connectorId: '01a2c0de-0000-7000-8000-000000000000', table: 'x; drop table y', key: ['id'] }] }, 400, /table/],
    ];
    for (const [definition, status, field] of cases) {
      const r = await post('/flows', { name: 'bad', definition });
      expect([JSON.stringify(definition), r.statusCode]).toEqual([JSON.stringify(definition), status]);
      const err = errorOf(r);
      expect(JSON.stringify(err)).toMatch(field);
    }
    expect(await t.head()).toBe(before);
  });

  it('an http step must use an http connector', async () => {
    const pgConn = (await post('/connectors', { kind: 'postgres', name: 'db', config: {} })).json().connectorId as string;
    const r = await post('/flows', {
      name: 'wrong kind',
      definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'http', connectorId: pgConn, url: '/x' }] },
    });
    expect(r.statusCode).toBe(422);
    expect(errorOf(r).message).toMatch(/postgres connector, not http/);
  });
});

describe('outbound webhooks', () => {
  it('registers (secret shown once, stored encrypted), updates, redrives dead letters, removes', async () => {
    const before = await t.head();
    const r = await post('/webhooks', { url: 'https://hooks.example.test/keel', eventTypes: ['RecordIngested', 'FlowRunFailed'] });
    expect(r.statusCode).toBe(201);
    const { webhookId, secret } = r.json();
    expect(secret).toMatch(/^whsec_[0-9a-f]{48}$/);
    const [registered] = await t.events(before);
    const stored = (registered!.data as { secret: string }).secret;
    expect(stored).not.toContain(secret);
    expect(await t.svc.keyring.decryptField(tenantId, stored)).toBe(secret);

    const u = await t.call('PATCH', `/v1/tenants/${tenantId}/webhooks/${webhookId}`, { eventTypes: ['RecordIngested'] }, {}, owner);
    expect(u.statusCode).toBe(200);
    expect(u.json()).toMatchObject({ eventTypes: ['RecordIngested'], url: 'https://hooks.example.test/keel', revision: 1 });

    // nothing dead-lettered yet
    const none = await post(`/webhooks/${webhookId}/redrive`, {});
    expect(none.statusCode).toBe(202);
    expect(none.json()).toMatchObject({ redriven: [], revision: 1 });
    const notDead = await post(`/webhooks/${webhookId}/redrive`, { deliveryIds: ['d-1'] });
    expect(notDead.statusCode).toBe(422);
    expect(errorOf(notDead).details).toEqual({ deliveryIds: ['d-1'] });

    // the webhook runner dead-letters two deliveries (as it records them, in the endpoint's stream)
    await t.runtime.store.appendToStream(`webhook-${tenantId}-${webhookId}`, ['d-1', 'd-2'].map((deliveryId) => ({
      type: 'WebhookDeliveryDeadLettered',
      tenantId,
      actor: { kind: 'connector' as const, id: 'runner-webhooks' },
      data: { webhookId, deliveryId, eventId: '01a2c0de-0000-7000-8000-000000000001', attempts: 8, reason: 'HTTP 503' },
    })));
    const one = await post(`/webhooks/${webhookId}/redrive`, { deliveryIds: ['d-2'] });
    expect(one.statusCode).toBe(202);
    expect(one.json().redriven).toEqual(['d-2']);
    const rest = await post(`/webhooks/${webhookId}/redrive`);
    expect(rest.json().redriven).toEqual(['d-1']);
    const redriven = (await t.events(before)).filter((e) => e.type === 'WebhookDeliveryRedriven').map((e) => e.data);
    expect(redriven).toEqual([
      { webhookId, deliveryId: 'd-2' },
      { webhookId, deliveryId: 'd-1' },
    ]);

    const d = await t.call('DELETE', `/v1/tenants/${tenantId}/webhooks/${webhookId}`, undefined, {}, owner);
    expect(d.json()).toMatchObject({ status: 'removed' });
    expect((await post(`/webhooks/${webhookId}/redrive`)).statusCode).toBe(410);
  });

  it('an operator may redrive but not register', async () => {
    const op = await t.issueKey(tenantId, 'operator', owner);
    const reg = await t.call('POST', `/v1/tenants/${tenantId}/webhooks`, { url: 'https://x.test', eventTypes: ['RecordIngested'] }, {}, op.apiKey);
    expect(reg.statusCode).toBe(403);
    const { webhookId } = (await post('/webhooks', { url: 'https://x.test', eventTypes: ['RecordIngested'] })).json();
    const rd = await t.call('POST', `/v1/tenants/${tenantId}/webhooks/${webhookId}/redrive`, {}, {}, op.apiKey);
    expect(rd.statusCode).toBe(202);
  });

  it('refuses unknown event types, non-http urls and empty updates', async () => {
    const before = await t.head();
    for (const body of [
      { url: 'https://x.test', eventTypes: ['Nope'] },
      { url: 'javascript:alert(1)', eventTypes: ['RecordIngested'] },
      { url: 'https://x.test', eventTypes: [] },
      { url: 'https://x.test' },
    ])
      expect((await post('/webhooks', body)).statusCode).toBe(400);
    const { webhookId } = (await post('/webhooks', { url: 'https://x.test', eventTypes: ['RecordIngested'] })).json();
    const mid = await t.head();
    expect((await t.call('PATCH', `/v1/tenants/${tenantId}/webhooks/${webhookId}`, {}, {}, owner)).statusCode).toBe(400);
    expect(await t.head()).toBe(mid);
    expect(mid).toBeGreaterThan(before);
  });
});

describe('inbound sources', () => {
  it('registers a source (secret once, encrypted) and removes it', async () => {
    const r = await post('/sources', { name: 'stripe' });
    expect(r.statusCode).toBe(201);
    const { sourceId, secret, url } = r.json();
    expect(url).toBe(`/v1/hooks/${tenantId}/${sourceId}`);
    const ev = (await t.events()).find((e) => e.type === 'InboundSourceRegistered' && (e.data as { sourceId: string }).sourceId === sourceId)!;
    expect(await t.svc.keyring.decryptField(tenantId, (ev.data as { secret: string }).secret)).toBe(secret);
    const d = await t.call('DELETE', `/v1/tenants/${tenantId}/sources/${sourceId}`, undefined, {}, owner);
    expect(d.json()).toMatchObject({ status: 'removed' });
    expect((await post('/sources', { name: 'has space' })).statusCode).toBe(400);
  });
});
