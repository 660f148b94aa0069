import type { EventStore } from '@keel/shared-events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handleCommand } from '../../src/app/handle-command.ts';
import { connectorDecider } from '../../src/domain/connector.ts';
import { errorOf, startTestService, type TestService } from '../support.ts';

let t: TestService;
let tenantId: string;
let owner: string;
beforeAll(async () => {
  t = await startTestService();
  ({ tenantId, apiKey: owner } = await t.createTenant());
});
afterAll(async () => t?.close());

const post = (path: string, body: unknown, headers: Record<string, string> = {}) => t.call('POST', `/v1/tenants/${tenantId}${path}`, body, headers, owner);

describe('Idempotency-Key on command POSTs', () => {
  it('same key and body → the first answer (status, body, ETag), nothing appended', async () => {
    const first = await post('/webhooks', { url: 'https://a.test/h', eventTypes: ['RecordIngested'] }, { 'idempotency-key': 'wh-1' });
    expect(first.statusCode).toBe(201);
    const after = await t.head();
    const again = await post('/webhooks', { eventTypes: ['RecordIngested'], url: 'https://a.test/h' }, { 'idempotency-key': 'wh-1' }); // key order does not matter
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json()); // the secret shown once is shown again to the retry
    expect(again.headers.etag).toBe(first.headers.etag);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await t.head()).toBe(after);
  });

  it('same key, different body (or route) → 422 IDEMPOTENCY_KEY_REUSED, nothing appended', async () => {
    await post('/sources', { name: 'a' }, { 'idempotency-key': 'src-1' });
    const after = await t.head();
    const r = await post('/sources', { name: 'b' }, { 'idempotency-key': 'src-1' });
    expect(r.statusCode).toBe(422);
    expect(errorOf(r)).toEqual({ code: 'IDEMPOTENCY_KEY_REUSED', message: 'this Idempotency-Key was used with another request' });
    const other = await post('/connectors', { kind: 'http', name: 'a' }, { 'idempotency-key': 'src-1' });
    expect(other.statusCode).toBe(422);
    expect(await t.head()).toBe(after);
  });

  it('survives a restart: the answer is in PostgreSQL (stored encrypted: it can hold secrets)', async () => {
    const first = await t.call('POST', '/v1/tenants', { name: 'Restarted' }, { 'idempotency-key': 'tenant-restart' });
    expect(first.statusCode).toBe(201);
    const row = await t.runtime.pool.query(`select response from keel_idempotency where key = 'tenant-restart'`);
    expect(row.rows[0].response).not.toContain(first.json().apiKey);
    const after = await t.head();
    const app2 = await t.restart();
    const again = await app2.inject({
      method: 'POST',
      url: '/v1/tenants',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json', 'idempotency-key': 'tenant-restart' },
      payload: JSON.stringify({ name: 'Restarted' }),
    });
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect(await t.head()).toBe(after);
  });

  it('a failed request is not remembered: the retry runs again', async () => {
    const bad = await post('/flows', { name: 'x', definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'postgres', connectorId: '01a2c0de-0000-7000-8000-000000000000', table: 't', key: ['id'] }] } }, { 'idempotency-key': 'flow-1' });
    expect(bad.statusCode).toBe(422);
    const rows = await t.runtime.pool.query(`select count(*)::int as n from keel_idempotency where key = 'flow-1'`);
    expect(rows.rows[0].n).toBe(0);
  });

  it('keys are per tenant', async () => {
    const other = await t.createTenant('Other');
    const a = await post('/sources', { name: 'same' }, { 'idempotency-key': 'shared-key' });
    const b = await t.call('POST', `/v1/tenants/${other.tenantId}/sources`, { name: 'same' }, { 'idempotency-key': 'shared-key' }, other.apiKey);
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(201);
    expect(b.json().sourceId).not.toBe(a.json().sourceId);
  });

  it('an invalid key is a 400', async () => {
    const r = await post('/sources', { name: 'x' }, { 'idempotency-key': 'has space' });
    expect(r.statusCode).toBe(400);
  });
});

describe('optimistic concurrency', () => {
  it('If-Match: the current revision passes, another one is a 412 with nothing appended', async () => {
    const { connectorId, revision } = (await post('/connectors', { kind: 'http', name: 'c' })).json();
    const ok = await post(`/connectors/${connectorId}/pause`, {}, { 'if-match': `"${revision}"` });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers.etag).toBe(`"${revision + 1}"`);
    const after = await t.head();
    const stale = await post(`/connectors/${connectorId}/resume`, {}, { 'if-match': `"${revision}"` });
    expect(stale.statusCode).toBe(412);
    expect(errorOf(stale)).toMatchObject({ code: 'PRECONDITION_FAILED', details: { expected: revision, actual: revision + 1 } });
    expect(await t.head()).toBe(after);
    const junk = await post(`/connectors/${connectorId}/resume`, {}, { 'if-match': 'yesterday' });
    expect(junk.statusCode).toBe(400);
    const del = await t.call('DELETE', `/v1/tenants/${tenantId}/connectors/${connectorId}`, undefined, { 'if-match': '1' }, owner);
    expect(del.statusCode).toBe(200);
  });

  it('concurrent commands on one stream all succeed: conflicts are retried', async () => {
    // Each conflict means another writer got through, so with 3 retries 4 racing writers all land.
    const { connectorId } = (await post('/connectors', { kind: 'http', name: 'busy' })).json();
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) => post(`/connectors/${connectorId}/credentials`, { credentials: `token-${i}` })),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(4).fill(200));
    const stream = await t.runtime.store.readStream(`connector-${tenantId}-${connectorId}`);
    expect(stream.map((e) => e.streamPosition)).toEqual([0, 1, 2, 3, 4]);
  });

  it('beyond the retries, a loser gets 409 CONCURRENCY_CONFLICT and its command is not applied', async () => {
    const { connectorId } = (await post('/connectors', { kind: 'http', name: 'crowded' })).json();
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => post(`/connectors/${connectorId}/credentials`, { credentials: `token-${i}` })),
    );
    const ok = results.filter((r) => r.statusCode === 200).length;
    for (const r of results.filter((x) => x.statusCode !== 200)) {
      expect(r.statusCode).toBe(409);
      expect(errorOf(r).code).toBe('CONCURRENCY_CONFLICT');
    }
    const stream = await t.runtime.store.readStream(`connector-${tenantId}-${connectorId}`);
    expect(stream).toHaveLength(1 + ok); // exactly the answered-200 commands were applied
  });

  it('a writer that keeps losing the race gets 409 after the bounded retries', async () => {
    const { connectorId } = (await post('/connectors', { kind: 'http', name: 'contended' })).json();
    const streamId = `connector-${tenantId}-${connectorId}`;
    // A real competing writer: after each of our reads, another process appends to the stream.
    let reads = 0;
    const racing: EventStore = {
      ...t.runtime.store,
      readStream: async (id, o) => {
        const events = await t.runtime.store.readStream(id, o);
        reads++;
        await t.runtime.store.appendToStream(streamId, [
          { type: 'ConnectorCredentialsRotated', tenantId, actor: { kind: 'system', id: 'rival' }, data: { connectorId, credentials: `kenc1::rival-${reads}` } },
        ]);
        return events;
      },
    };
    const ctx = { ...t.svc.commands, store: racing, retries: 3 };
    await expect(
      handleCommand(ctx, {
        decider: connectorDecider,
        streamId,
        command: { type: 'PauseConnector', data: { connectorId } },
        tenantId,
        actor: { kind: 'system', id: 'test' },
      }),
    ).rejects.toMatchObject({ code: 'CONCURRENCY_CONFLICT' });
    expect(reads).toBe(4); // the first try and three retries
    const stream = await t.runtime.store.readStream(streamId);
    expect(stream.some((e) => e.type === 'ConnectorPaused')).toBe(false);
  });
});
