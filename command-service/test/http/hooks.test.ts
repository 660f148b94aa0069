import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

let t: TestService;
let tenantId: string;
let owner: string;
let sourceId: string;
let secret: string;
beforeAll(async () => {
  t = await startTestService();
  ({ tenantId, apiKey: owner } = await t.createTenant());
  const s = (await t.call('POST', `/v1/tenants/${tenantId}/sources`, { name: 'stripe' }, {}, owner)).json();
  ({ sourceId, secret } = s);
});
afterAll(async () => t?.close());

const sign = (body: string, ts = Math.floor(Date.now() / 1000), key = secret) =>
  `t=${ts},v1=${createHmac('sha256', key).update(`${ts}.${body}`).digest('hex')}`;
const hook = (body: string, headers: Record<string, string>, path = `/v1/hooks/${tenantId}/${sourceId}`) =>
  t.app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/json', ...headers }, payload: body });

describe('inbound webhooks', () => {
  it('stores a correctly signed JSON body as a record (receivedVia webhook) without any API key', async () => {
    const before = await t.head();
    const body = '{"id":"evt_1","type":"invoice.paid","amount":4200}';
    const r = await hook(body, { 'keel-signature': sign(body), 'keel-entity-type': 'invoice', 'keel-external-id': 'evt_1' });
    expect(r.statusCode).toBe(200);
    const { eventId, streamId, globalPosition } = r.json();
    expect(streamId).toBe(`record-${tenantId}-invoice-evt_1`);
    const [e] = await t.events(before);
    expect(e).toMatchObject({ eventId, globalPosition, type: 'RecordIngested', tenantId, actor: { kind: 'connector', id: `source:${sourceId}` } });
    expect(e!.data).toMatchObject({ source: 'stripe', entityType: 'invoice', externalId: 'evt_1', receivedVia: 'webhook', payload: { id: 'evt_1', type: 'invoice.paid', amount: 4200 } });
  });

  it('a replay of the same signed request inside the window stores nothing new', async () => {
    const body = '{"id":"evt_2"}';
    const sig = sign(body);
    const first = await hook(body, { 'keel-signature': sig });
    const mid = await t.head();
    const again = await hook(body, { 'keel-signature': sig });
    expect(again.statusCode).toBe(200);
    expect(again.json().eventId).toBe(first.json().eventId);
    expect(await t.head()).toBe(mid);
    expect(first.json().streamId).toMatch(new RegExp(`^record-${tenantId}-webhook-[0-9a-f]{32}$`));
  });

  it('refuses bad, stale, missing or foreign signatures with 401 and stores nothing', async () => {
    const before = await t.head();
    const body = '{"id":"evt_3"}';
    const old = Math.floor(Date.now() / 1000) - 301;
    const cases: [Record<string, string>, string][] = [
      [{ 'keel-signature': sign(body, undefined, 'whsec_wrong') }, 'INVALID_SIGNATURE'],
      [{ 'keel-signature': sign('{"id":"evt_other"}') }, 'INVALID_SIGNATURE'],
      [{ 'keel-signature': sign(body, old) }, 'SIGNATURE_EXPIRED'],
      [{ 'keel-signature': sign(body, old + 700) }, 'SIGNATURE_EXPIRED'],
      [{}, 'INVALID_SIGNATURE'],
      [{ 'keel-signature': 'garbage' }, 'INVALID_SIGNATURE'],
    ];
    for (const [headers, code] of cases) {
      const r = await hook(body, headers);
      expect([JSON.stringify(headers), r.statusCode]).toEqual([JSON.stringify(headers), 401]);
      expect(errorOf(r).code).toBe(code);
    }
    // an unknown source or tenant looks the same as a bad signature
    const unknown = await hook(body, { 'keel-signature': sign(body) }, `/v1/hooks/${tenantId}/01a2c0de-0000-7000-8000-000000000000`);
    expect(unknown.statusCode).toBe(401);
    const otherTenant = await t.createTenant('Other');
    const foreign = await hook(body, { 'keel-signature': sign(body) }, `/v1/hooks/${otherTenant.tenantId}/${sourceId}`);
    expect(foreign.statusCode).toBe(401);
    const settled = await t.head();
    // only the other tenant's creation was stored meanwhile
    expect((await t.events(before)).every((e) => e.tenantId === otherTenant.tenantId)).toBe(true);
    expect(settled).toBeGreaterThan(before);
  });

  it('signed but not a JSON object: 415 / 400, nothing stored', async () => {
    const before = await t.head();
    const text = 'id=evt_4';
    const r1 = await t.app.inject({ method: 'POST', url: `/v1/hooks/${tenantId}/${sourceId}`, headers: { 'content-type': 'application/x-www-form-urlencoded', 'keel-signature': sign(text) }, payload: text });
    expect(r1.statusCode).toBe(415);
    const bad = '{"id":';
    const r2 = await hook(bad, { 'keel-signature': sign(bad) });
    expect(r2.statusCode).toBe(400);
    const arr = '[1,2]';
    const r3 = await hook(arr, { 'keel-signature': sign(arr) });
    expect(r3.statusCode).toBe(400);
    const badId = '{"id":1}';
    const r4 = await hook(badId, { 'keel-signature': sign(badId), 'keel-external-id': "1' OR '1'='1" });
    expect(r4.statusCode).toBe(400);
    expect(await t.head()).toBe(before);
  });

  it('Idempotency-Key: same key → first answer, no new event, even re-signed later; another body → 422', async () => {
    const body = '{"id":"evt_5"}';
    const first = await hook(body, { 'keel-signature': sign(body), 'idempotency-key': 'delivery-5' });
    expect(first.statusCode).toBe(200);
    const mid = await t.head();
    const resent = await hook(body, { 'keel-signature': sign(body, Math.floor(Date.now() / 1000) - 5), 'idempotency-key': 'delivery-5' });
    expect(resent.statusCode).toBe(200);
    expect(resent.body).toBe(first.body);
    const other = '{"id":"evt_6"}';
    const reused = await hook(other, { 'keel-signature': sign(other), 'idempotency-key': 'delivery-5' });
    expect(reused.statusCode).toBe(422);
    expect(await t.head()).toBe(mid);
  });

  it('a removed source answers 401', async () => {
    const s = (await t.call('POST', `/v1/tenants/${tenantId}/sources`, { name: 'shopify' }, {}, owner)).json();
    await t.call('DELETE', `/v1/tenants/${tenantId}/sources/${s.sourceId}`, undefined, {}, owner);
    const body = '{"a":1}';
    const r = await hook(body, { 'keel-signature': sign(body, undefined, s.secret) }, `/v1/hooks/${tenantId}/${s.sourceId}`);
    expect(r.statusCode).toBe(401);
  });
});
