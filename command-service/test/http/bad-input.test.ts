import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

/**
 * The bad-input table of issue 3: each case answers the right status with the stable body
 * `{error: {code, message, details?}}` and stores nothing (read back from the store). Every case
 * runs through app.inject(); the socket suite sends a share of them over real HTTP.
 */
let t: TestService;
let tenant: { tenantId: string; apiKey: string; keyId: string };
let other: { tenantId: string; apiKey: string; keyId: string };
let viewer: string;
let revoked: string;
let base: string;

beforeAll(async () => {
  t = await startTestService({ config: (c) => ({ ...c, bodyLimitBytes: 64 * 1024, ingest: { ...c.ingest, maxBytes: 256 * 1024 } }) });
  tenant = await t.createTenant('Bad Input Inc');
  other = await t.createTenant('Other');
  viewer = (await t.issueKey(tenant.tenantId, 'viewer', tenant.apiKey)).apiKey;
  const r = await t.issueKey(tenant.tenantId, 'admin', tenant.apiKey);
  await t.call('DELETE', `/v1/tenants/${tenant.tenantId}/api-keys/${r.keyId}`, undefined, {}, tenant.apiKey);
  revoked = r.apiKey;
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => t?.close());

interface Case {
  name: string;
  method?: string;
  path: () => string;
  body?: string;
  contentType?: string;
  key?: () => string;
  headers?: Record<string, string>;
  status: number;
  code: string;
  /** Events the case may append (all AccessDenied, in the caller's trail). */
  audited?: () => string;
}

const T = () => tenant.tenantId;
const rec = { source: 'shop', entityType: 'order', externalId: 'o-1', payload: { a: 1 } };
const big = JSON.stringify({ name: 'x'.repeat(70 * 1024) });

const cases: Case[] = [
  { name: 'malformed JSON', path: () => `/v1/tenants/${T()}/connectors`, body: '{"kind": "http", "name": ', status: 400, code: 'BAD_REQUEST' },
  { name: 'malformed JSON (tenant)', path: () => '/v1/tenants', key: () => t.adminKey, body: '{name: Acme}', status: 400, code: 'BAD_REQUEST' },
  { name: 'empty JSON body', path: () => `/v1/tenants/${T()}/connectors`, body: '', status: 400, code: 'BAD_REQUEST' },
  { name: 'prototype pollution', path: () => `/v1/tenants/${T()}/sources`, body: '{"name":"a","__proto__":{"admin":true}}', status: 400, code: 'BAD_REQUEST' },
  { name: 'wrong content type', path: () => `/v1/tenants/${T()}/connectors`, body: 'kind=http&name=x', contentType: 'application/x-www-form-urlencoded', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'text/plain', path: () => `/v1/tenants/${T()}/api-keys`, body: '{"name":"x","role":"viewer"}', contentType: 'text/plain', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'wrong content type (ingest)', path: () => `/v1/tenants/${T()}/ingest`, body: 'source,entityType\nshop,order', contentType: 'text/csv', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'unknown field', path: () => `/v1/tenants/${T()}/api-keys`, body: JSON.stringify({ name: 'x', role: 'viewer', admin: true }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'unknown nested field', path: () => `/v1/tenants/${T()}/connectors`, body: JSON.stringify({ kind: 'http', name: 'x', config: { baseUrl: 'https://a.test', retries: 9 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'missing field', path: () => `/v1/tenants/${T()}/api-keys`, body: JSON.stringify({ name: 'x' }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'missing field (tenant)', path: () => '/v1/tenants', key: () => t.adminKey, body: '{}', status: 400, code: 'VALIDATION_FAILED' },
  { name: 'wrong type', path: () => `/v1/tenants/${T()}/api-keys`, body: JSON.stringify({ name: 42, role: 'viewer' }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'wrong type (array for object)', path: () => `/v1/tenants/${T()}/webhooks`, body: JSON.stringify([{ url: 'https://a.test' }]), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'wrong type (number for string, no coercion)', path: () => `/v1/tenants/${T()}/sources`, body: JSON.stringify({ name: 12345 }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'wrong enum', path: () => `/v1/tenants/${T()}/api-keys`, body: JSON.stringify({ name: 'x', role: 'superuser' }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'oversized body', path: () => `/v1/tenants/${T()}/sources`, body: big, status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'oversized ingest body', path: () => `/v1/tenants/${T()}/ingest`, body: (JSON.stringify(rec) + '\n').repeat(4000), contentType: 'application/x-ndjson', status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'unknown tenant (admin)', path: () => '/v1/tenants/01a2c0de-0000-7000-8000-00000000dead/connectors', key: () => t.adminKey, body: JSON.stringify({ kind: 'http', name: 'x' }), status: 404, code: 'NOT_FOUND' },
  { name: 'unknown tenant (tenant key)', path: () => '/v1/tenants/01a2c0de-0000-7000-8000-00000000dead/ingest', body: JSON.stringify([rec]), status: 404, code: 'NOT_FOUND', audited: T },
  { name: 'no key', path: () => `/v1/tenants/${T()}/connectors`, key: () => '', body: JSON.stringify({ kind: 'http', name: 'x' }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'malformed key', path: () => `/v1/tenants/${T()}/connectors`, key: () => 'keel_zzz', body: JSON.stringify({ kind: 'http', name: 'x' }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'wrong secret', path: () => `/v1/tenants/${T()}/connectors`, key: () => tenant.apiKey.slice(0, -4) + '0000', body: JSON.stringify({ kind: 'http', name: 'x' }), status: 401, code: 'UNAUTHENTICATED' },
  { name: 'revoked key', path: () => `/v1/tenants/${T()}/connectors`, key: () => revoked, body: JSON.stringify({ kind: 'http', name: 'x' }), status: 401, code: 'KEY_REVOKED', audited: T },
  { name: 'wrong role', path: () => `/v1/tenants/${T()}/ingest`, key: () => viewer, body: JSON.stringify([rec]), status: 403, code: 'FORBIDDEN', audited: T },
  { name: 'wrong role (platform only)', path: () => `/v1/tenants/${T()}/suspend`, body: JSON.stringify({ reason: 'x' }), status: 403, code: 'FORBIDDEN', audited: T },
  { name: 'cross-tenant id', path: () => `/v1/tenants/${other.tenantId}/webhooks`, body: JSON.stringify({ url: 'https://a.test', eventTypes: ['RecordIngested'] }), status: 404, code: 'NOT_FOUND', audited: T },
  { name: 'cross-tenant ingest', path: () => `/v1/tenants/${other.tenantId}/ingest`, body: JSON.stringify([rec]), status: 404, code: 'NOT_FOUND', audited: T },
  { name: 'cross-tenant key revocation', method: 'DELETE', path: () => `/v1/tenants/${other.tenantId}/api-keys/${other.keyId}`, status: 404, code: 'NOT_FOUND', audited: T },
  { name: 'unknown key id', method: 'DELETE', path: () => `/v1/tenants/${T()}/api-keys/0123456789abcdef0123`, status: 404, code: 'NOT_FOUND' },
  { name: 'unknown route', method: 'GET', path: () => '/v1/nope', status: 404, code: 'NOT_FOUND' },
];

async function expectErrorBody(raw: string, code: string) {
  const body = JSON.parse(raw);
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).filter((k) => !['code', 'message', 'details'].includes(k))).toEqual([]);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function expectNothingStored(before: number, audited?: string) {
  const after = await t.events(before);
  if (!audited) return expect(after.map((e) => e.type)).toEqual([]);
  expect(after.length).toBeLessThanOrEqual(1);
  for (const e of after) expect([e.type, e.tenantId, e.streamId]).toEqual(['AccessDenied', audited, `access-${audited}-denials`]);
}

describe('bad input, through app.inject()', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const before = await t.head();
    const key = c.key ? c.key() : tenant.apiKey;
    const r = await t.app.inject({
      method: (c.method ?? 'POST') as 'POST',
      url: c.path(),
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(c.body !== undefined ? { 'content-type': c.contentType ?? 'application/json' } : {}),
        ...c.headers,
      },
      payload: c.body,
    });
    expect([c.name, r.statusCode]).toEqual([c.name, c.status]);
    await expectErrorBody(r.body, c.code);
    await expectNothingStored(before, c.audited?.());
  });

  it('duplicate Idempotency-Key with a different body → 422, nothing stored', async () => {
    const path = `/v1/tenants/${T()}/sources`;
    await t.call('POST', path, { name: 'first' }, { 'idempotency-key': 'dup' }, tenant.apiKey);
    const before = await t.head();
    const r = await t.call('POST', path, { name: 'second' }, { 'idempotency-key': 'dup' }, tenant.apiKey);
    expect(r.statusCode).toBe(422);
    await expectErrorBody(r.body, 'IDEMPOTENCY_KEY_REUSED');
    await expectNothingStored(before);
  });
});

/** Injection text in every string field. */
const attacks = [
  "' OR '1'='1'; DROP TABLE keel_events; --",
  '<script>alert(1)</script>',
  '${7*7}{{7*7}}#{7*7}',
  '../../../etc/passwd',
  '$(rm -rf /)`id`',
  '{"$where": "1 == 1"}',
];
const controls = ['a\u0000b', 'a\r\nX-Injected: 1', 'a\u001b[31mred'];

describe('injection text in every string field', () => {
  // Identifiers, enums, URLs and expressions: refused (400), nothing stored.
  const idFields: { name: string; path: () => string; body: (v: string) => unknown; key?: () => string }[] = [
    { name: 'api-keys.role', path: () => `/v1/tenants/${T()}/api-keys`, body: (v) => ({ name: 'x', role: v }) },
    { name: 'users.email', path: () => `/v1/tenants/${T()}/users`, body: (v) => ({ email: v, role: 'viewer' }) },
    { name: 'users.userId', path: () => `/v1/tenants/${T()}/users`, body: (v) => ({ email: 'a@b.test', role: 'viewer', userId: v }) },
    { name: 'connectors.kind', path: () => `/v1/tenants/${T()}/connectors`, body: (v) => ({ kind: v, name: 'x' }) },
    { name: 'connectors.config.baseUrl', path: () => `/v1/tenants/${T()}/connectors`, body: (v) => ({ kind: 'http', name: 'x', config: { baseUrl: v } }) },
    { name: 'connectors.config.schema', path: () => `/v1/tenants/${T()}/connectors`, body: (v) => ({ kind: 'postgres', name: 'x', config: { schema: v } }) },
    { name: 'flows.trigger.eventType', path: () => `/v1/tenants/${T()}/flows`, body: (v) => ({ name: 'f', definition: { trigger: { eventType: v }, steps: [{ type: 'transform', expression: '$' }] } }) },
    { name: 'flows.steps.expression', path: () => `/v1/tenants/${T()}/flows`, body: (v) => ({ name: 'f', definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'transform', expression: `(${v}` }] } }) },
    { name: 'flows.steps.table', path: () => `/v1/tenants/${T()}/flows`, body: (v) => ({ name: 'f', definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'postgres', connectorId: '01a2c0de-0000-7000-8000-000000000000', table: v, key: ['id'] }] } }) },
    { name: 'webhooks.url', path: () => `/v1/tenants/${T()}/webhooks`, body: (v) => ({ url: v, eventTypes: ['RecordIngested'] }) },
    { name: 'webhooks.eventTypes', path: () => `/v1/tenants/${T()}/webhooks`, body: (v) => ({ url: 'https://a.test', eventTypes: [v] }) },
    { name: 'sources.name', path: () => `/v1/tenants/${T()}/sources`, body: (v) => ({ name: v }) },
  ];
  it.each(idFields.map((f) => [f.name, f] as const))('%s: refused', async (_n, f) => {
    for (const v of [...attacks, ...controls]) {
      const before = await t.head();
      const r = await t.call('POST', f.path(), f.body(v), {}, tenant.apiKey);
      expect([f.name, v, r.statusCode]).toEqual([f.name, v, 400]);
      await expectErrorBody(r.body, 'VALIDATION_FAILED');
      await expectNothingStored(before);
    }
  });

  it('ingest identifiers: refused per record, nothing stored', async () => {
    for (const field of ['source', 'entityType', 'externalId'] as const)
      for (const v of [...attacks, ...controls]) {
        const before = await t.head();
        const r = await t.call('POST', `/v1/tenants/${T()}/ingest`, [{ ...rec, [field]: v }], {}, tenant.apiKey);
        expect([field, v, r.statusCode]).toEqual([field, v, 400]);
        expect((errorOf(r).details as { rejected: { code: string }[] }).rejected[0]!.code).toBe('INVALID_FIELD');
        await expectNothingStored(before);
      }
  });

  it('path parameters: refused or not found, nothing stored', async () => {
    for (const v of attacks) {
      const before = await t.head();
      const enc = encodeURIComponent(v);
      const asTenant = await t.call('POST', `/v1/tenants/${enc}/sources`, { name: 'x' }, {}, t.adminKey);
      expect([v, asTenant.statusCode]).toEqual([v, 404]);
      const asId = await t.call('POST', `/v1/tenants/${T()}/connectors/${enc}/pause`, {}, {}, tenant.apiKey);
      expect([v, asId.statusCode]).toEqual([v, 400]);
      const asKey = await t.call('DELETE', `/v1/tenants/${T()}/api-keys/${enc}`, undefined, {}, tenant.apiKey);
      expect([v, asKey.statusCode]).toEqual([v, 400]);
      await expectNothingStored(before);
    }
  });

  it('headers: a hostile Idempotency-Key or If-Match is a 400', async () => {
    for (const v of attacks.filter((a) => /\s/.test(a))) {
      const before = await t.head();
      const r = await t.call('POST', `/v1/tenants/${T()}/sources`, { name: 'x' }, { 'idempotency-key': v }, tenant.apiKey);
      expect(r.statusCode).toBe(400);
      await expectNothingStored(before);
    }
    const r = await t.call('POST', `/v1/tenants/${T()}/sources`, { name: 'x' }, { 'if-match': "1' OR '1'='1" }, tenant.apiKey);
    expect(r.statusCode).toBe(400);
  });

  // Free text (names, reasons, payloads): data, stored byte for byte and never interpreted;
  // control characters are refused.
  it('free-text fields keep injection text verbatim, and refuse control characters', async () => {
    for (const v of attacks) {
      const r = await t.call('POST', `/v1/tenants/${T()}/connectors`, { kind: 'http', name: v, config: { headers: { 'X-Note': v } } }, {}, tenant.apiKey);
      expect(r.statusCode).toBe(201);
      const [e] = await t.runtime.store.readStream(`connector-${T()}-${r.json().connectorId}`);
      expect((e!.data as { name: string }).name).toBe(v);
      expect((e!.data as { config: { headers: Record<string, string> } }).config.headers['X-Note']).toBe(v);
      const k = await t.call('POST', `/v1/tenants/${T()}/api-keys`, { name: v, role: 'viewer' }, {}, tenant.apiKey);
      expect(k.json().name).toBe(v);
      const tn = await t.call('POST', '/v1/tenants', { name: v });
      expect(tn.statusCode).toBe(201);
      const ing = await t.call('POST', `/v1/tenants/${T()}/ingest`, [{ ...rec, externalId: 'safe-1', payload: { [v]: v } }], {}, tenant.apiKey);
      expect(ing.statusCode).toBe(200);
    }
    const tables = await t.runtime.pool.query("select count(*)::int as n from pg_tables where tablename in ('keel_events', 'keel_auth_api_keys')");
    expect(tables.rows[0].n).toBe(2);
    for (const v of controls) {
      const before = await t.head();
      for (const [path, body] of [
        [`/v1/tenants/${T()}/connectors`, { kind: 'http', name: v }],
        [`/v1/tenants/${T()}/api-keys`, { name: v, role: 'viewer' }],
        ['/v1/tenants', { name: v }],
        [`/v1/tenants/${T()}/connectors`, { kind: 'http', name: 'x', config: { headers: { 'X-Note': v } } }],
      ] as const) {
        const r = await t.call('POST', path, body, {}, path === '/v1/tenants' ? t.adminKey : tenant.apiKey);
        expect([path, v, r.statusCode]).toEqual([path, v, 400]);
      }
      await expectNothingStored(before);
    }
  });
});

describe('bad input over a real socket', () => {
  const socketCases = cases.filter((c) =>
    ['malformed JSON', 'wrong content type', 'unknown field', 'missing field', 'wrong type', 'oversized body', 'unknown tenant (admin)', 'revoked key', 'wrong role', 'cross-tenant id'].includes(c.name),
  );
  it.each(socketCases.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const before = await t.head();
    const key = c.key ? c.key() : tenant.apiKey;
    const r = await fetch(base + c.path(), {
      method: c.method ?? 'POST',
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(c.body !== undefined ? { 'content-type': c.contentType ?? 'application/json' } : {}) },
      body: c.body,
    });
    expect([c.name, r.status]).toEqual([c.name, c.status]);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(r.headers.get('x-request-id')).toBeTruthy();
    await expectErrorBody(await r.text(), c.code);
    await expectNothingStored(before, c.audited?.());
  });

  it('a chunked NDJSON body (no Content-Length) over the limit is cut off at it with 413, saying what was stored', async () => {
    // With Content-Length the limit is checked before anything is read (see above: nothing
    // stored). A chunked body's size is only known as it streams, and the batches before the
    // limit are already committed: the 413 says how many, and a retry with the same
    // Idempotency-Key would not duplicate them.
    const before = await t.head();
    const line = JSON.stringify(rec) + '\n';
    async function* body() {
      for (let i = 0; i < 5000; i++) yield new TextEncoder().encode(line.replace('o-1', `cut-${i}`));
    }
    const r = await fetch(`${base}/v1/tenants/${T()}/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/x-ndjson' },
      body: body(),
      duplex: 'half',
    } as RequestInit);
    expect(r.status).toBe(413);
    const text = await r.text();
    await expectErrorBody(text, 'PAYLOAD_TOO_LARGE');
    const details = JSON.parse(text).error.details as { accepted: number; globalPosition: number };
    const stored = await t.events(before);
    expect(stored).toHaveLength(details.accepted);
    expect(details.accepted).toBeLessThan(5000);
    if (details.accepted) expect(details.globalPosition).toBe(Math.max(...stored.map((e) => e.globalPosition)));
  });

  it('streams a chunked NDJSON body and stores every record', async () => {
    const before = await t.head();
    const enc = new TextEncoder();
    async function* body() {
      for (let i = 0; i < 1000; i++) {
        yield enc.encode(JSON.stringify({ ...rec, externalId: `sock-${i}` }) + '\n');
        if (i % 100 === 0) await new Promise((r) => setTimeout(r, 5));
      }
    }
    const r = await fetch(`${base}/v1/tenants/${T()}/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/x-ndjson' },
      body: body(),
      duplex: 'half',
    } as RequestInit);
    expect(r.status).toBe(200);
    const json = (await r.json()) as { accepted: number };
    expect(json.accepted).toBe(1000);
    expect(await t.events(before)).toHaveLength(1000);
  });

  it('an inbound webhook with a bad signature over a socket: 401, nothing stored', async () => {
    const s = (await t.call('POST', `/v1/tenants/${T()}/sources`, { name: 'sock' }, {}, tenant.apiKey)).json();
    const before = await t.head();
    const body = '{"a":1}';
    const ts = Math.floor(Date.now() / 1000);
    const wrong = createHmac('sha256', 'not-the-secret').update(`${ts}.${body}`).digest('hex');
    const r = await fetch(`${base}/v1/hooks/${T()}/${s.sourceId}`, { method: 'POST', headers: { 'content-type': 'application/json', 'keel-signature': `t=${ts},v1=${wrong}` }, body });
    expect(r.status).toBe(401);
    await expectErrorBody(await r.text(), 'INVALID_SIGNATURE');
    await expectNothingStored(before);
    const right = createHmac('sha256', s.secret).update(`${ts}.${body}`).digest('hex');
    const ok = await fetch(`${base}/v1/hooks/${T()}/${s.sourceId}`, { method: 'POST', headers: { 'content-type': 'application/json', 'keel-signature': `t=${ts},v1=${right}` }, body });
    expect(ok.status).toBe(200);
  });
});
