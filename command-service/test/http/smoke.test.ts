import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support.ts';

let t: TestService;
beforeAll(async () => {
  t = await startTestService();
});
afterAll(async () => t?.close());

describe('smoke', () => {
  it('creates a tenant and ingests', async () => {
    const { tenantId, apiKey } = await t.createTenant();
    const r = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 'crm', entityType: 'contact', externalId: 'c1', payload: { a: 1 } }], {}, apiKey);
    console.log(r.statusCode, r.body);
    expect(r.statusCode).toBe(200);
    console.log((await t.events()).map((e) => `${e.globalPosition} ${e.streamId} ${e.type}`));
  });
});
