import { Readable } from 'node:stream';
import { canonicalHash } from '@keel/shared-events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

let t: TestService;
let tenantId: string;
let owner: string;
beforeAll(async () => {
  // Small batches so a few thousand records span several store transactions.
  t = await startTestService({ config: (c) => ({ ...c, ingest: { ...c.ingest, batchSize: 250, maxRecordBytes: 4096 } }) });
  ({ tenantId, apiKey: owner } = await t.createTenant());
});
afterAll(async () => t?.close());

const rec = (i: number, extra: Record<string, unknown> = {}) => ({ source: 'shop', entityType: 'order', externalId: `o-${i}`, payload: { n: i, name: `Order ${i}` }, ...extra });
const ndjson = (records: unknown[]) => records.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const ingest = (payload: string | Readable, contentType = 'application/x-ndjson', headers: Record<string, string> = {}, key = owner) =>
  t.app.inject({
    method: 'POST',
    url: `/v1/tenants/${tenantId}/ingest`,
    headers: { authorization: `Bearer ${key}`, 'content-type': contentType, ...headers },
    payload,
  });

describe('batch ingest', () => {
  it('stores NDJSON records as RecordIngested v2 on record-<tenant>-<entityType>-<externalId>, spanning several batches', async () => {
    const before = await t.head();
    const records = Array.from({ length: 1234 }, (_, i) => rec(i, i === 3 ? { occurredAt: '2024-01-02T03:04:05.678Z' } : {}));
    const r = await ingest(ndjson(records));
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body).toMatchObject({ accepted: 1234, rejected: [], rejectedCount: 0 });
    const events = await t.events(before);
    expect(events).toHaveLength(1234);
    expect(body.globalPosition).toBe(Math.max(...events.map((e) => e.globalPosition)));
    const byId = new Map(events.map((e) => [(e.data as { externalId: string }).externalId, e]));
    const e3 = byId.get('o-3')!;
    expect(e3).toMatchObject({ type: 'RecordIngested', schemaVersion: 2, tenantId, streamId: `record-${tenantId}-order-o-3`, streamPosition: 0 });
    expect(e3.occurredAt.toISOString()).toBe('2024-01-02T03:04:05.678Z');
    expect(e3.data).toEqual({ source: 'shop', entityType: 'order', externalId: 'o-3', payload: { n: 3, name: 'Order 3' }, receivedVia: 'api', contentHash: canonicalHash({ n: 3, name: 'Order 3' }) });
    expect(e3.actor.kind).toBe('apiKey');
    expect(e3.correlationId).toBe(r.headers['x-correlation-id']);
  });

  it('accepts a JSON array too; a second record of the same entity goes to the same stream, next revision', async () => {
    const r = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [rec(1, { payload: { n: 1, v: 2 } })], {}, owner);
    expect(r.statusCode).toBe(200);
    expect(r.json().accepted).toBe(1);
    const stream = await t.runtime.store.readStream(`record-${tenantId}-order-o-1`);
    expect(stream.map((e) => e.streamPosition)).toEqual([0, 1]);
    expect(stream[1]!.data).toMatchObject({ payload: { n: 1, v: 2 } });
  });

  it('reports invalid records by index with a reason and stores the valid ones', async () => {
    const before = await t.head();
    const lines = [
      rec(100),
      '{"source": "shop", "entityType": ', // 1 invalid JSON
      rec(101, { extra: true }), // 2 unknown field
      { source: 'shop', entityType: 'order', payload: {} }, // 3 missing externalId
      rec(102, { externalId: 7 }), // 4 wrong type
      '', // blank lines are not records
      rec(103, { externalId: "x'); DROP TABLE keel_events; --" }), // 5 injection in an id
      JSON.stringify(rec(104, { payload: { big: 'y'.repeat(5000) } })), // 6 over the per-record limit
      rec(105, { payload: { note: "Robert'); DROP TABLE keel_events;-- <script>alert(1)</script>" } }), // 7 injection text in the payload: just data
      '[1,2]', // 8 not an object
    ];
    const r = await ingest(ndjson(lines));
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body.accepted).toBe(2);
    expect(body.rejectedCount).toBe(7);
    expect(body.rejected.map((x: { index: number; code: string }) => [x.index, x.code])).toEqual([
      [1, 'INVALID_JSON'],
      [2, 'UNKNOWN_FIELD'],
      [3, 'MISSING_FIELD'],
      [4, 'INVALID_FIELD'],
      [5, 'INVALID_FIELD'],
      [6, 'TOO_LARGE'],
      [8, 'NOT_AN_OBJECT'],
    ]);
    for (const x of body.rejected) expect(typeof x.message).toBe('string');
    const stored = await t.events(before);
    expect(stored.map((e) => (e.data as { externalId: string }).externalId)).toEqual(['o-100', 'o-105']);
    expect((stored[1]!.data as { payload: { note: string } }).payload.note).toBe("Robert'); DROP TABLE keel_events;-- <script>alert(1)</script>");
    const tables = await t.runtime.pool.query("select count(*)::int as n from pg_tables where tablename = 'keel_events'");
    expect(tables.rows[0].n).toBe(1);
  });

  it('a body with no valid record is a 400 listing them, nothing stored; an empty body is a 400', async () => {
    const before = await t.head();
    const r = await ingest(ndjson(['nope', rec(1, { payload: [] })]));
    expect(r.statusCode).toBe(400);
    const err = errorOf(r);
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.details).toMatchObject({ rejectedCount: 2, rejected: [{ index: 0, code: 'INVALID_JSON' }, { index: 1, code: 'INVALID_FIELD' }] });
    const empty = await ingest('\n\n');
    expect(empty.statusCode).toBe(400);
    expect(errorOf(empty).code).toBe('BAD_REQUEST');
    const notArray = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, { records: [] }, {}, owner);
    expect(notArray.statusCode).toBe(400);
    expect(await t.head()).toBe(before);
  });

  it('reads NDJSON as it streams, in small chunks split anywhere (also inside UTF-8 characters)', async () => {
    const text = ndjson(Array.from({ length: 300 }, (_, i) => rec(1000 + i, { payload: { name: 'Zoë 🚀 Ünïcode' } })));
    const bytes = Buffer.from(text);
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    const before = await t.head();
    const r = await ingest(Readable.from(chunks));
    expect(r.statusCode).toBe(200);
    expect(r.json().accepted).toBe(300);
    const events = await t.events(before);
    expect(events.every((e) => (e.data as { payload: { name: string } }).payload.name === 'Zoë 🚀 Ünïcode')).toBe(true);
  });

  it('refuses other content types (415) and oversized bodies (413) without storing anything', async () => {
    const before = await t.head();
    const r415 = await ingest(ndjson([rec(1)]), 'text/csv');
    expect(r415.statusCode).toBe(415);
    expect(errorOf(r415).code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const small = await startTestService({ config: (c) => ({ ...c, ingest: { ...c.ingest, maxBytes: 2048 } }) });
    try {
      const s = await small.createTenant();
      const sBefore = await small.head();
      const big = ndjson(Array.from({ length: 100 }, (_, i) => rec(i)));
      for (const type of ['application/x-ndjson', 'application/json']) {
        const payload = type === 'application/json' ? JSON.stringify(Array.from({ length: 100 }, (_, i) => rec(i))) : big;
        const r = await small.app.inject({ method: 'POST', url: `/v1/tenants/${s.tenantId}/ingest`, headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': type }, payload });
        expect([type, r.statusCode]).toEqual([type, 413]);
        expect(errorOf(r).code).toBe('PAYLOAD_TOO_LARGE');
      }
      expect(await small.head()).toBe(sBefore);
    } finally {
      await small.close();
    }
    expect(await t.head()).toBe(before);
  });
});

describe('ingest idempotency', () => {
  it('the same Idempotency-Key and body gets the first answer and appends nothing; another body is a 422', async () => {
    const body = ndjson([rec(5000), rec(5001), 'bad']);
    const first = await ingest(body, 'application/x-ndjson', { 'idempotency-key': 'ingest-1' });
    expect(first.statusCode).toBe(200);
    const after = await t.head();
    const again = await ingest(body, 'application/x-ndjson', { 'idempotency-key': 'ingest-1' });
    expect(again.statusCode).toBe(200);
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await t.head()).toBe(after);
    const other = await ingest(ndjson([rec(5002)]), 'application/x-ndjson', { 'idempotency-key': 'ingest-1' });
    expect(other.statusCode).toBe(422);
    expect(errorOf(other).code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await t.head()).toBe(after);
  });

  it('a retry of an interrupted request stores only what is missing (event ids derive from the key)', async () => {
    const records = Array.from({ length: 600 }, (_, i) => rec(7000 + i));
    // The first attempt dies after its first batches: simulate by storing a prefix under the same
    // key's ids, then leaving the reservation to expire as a crashed holder would.
    const begun = await t.svc.idempotency.begin(`${tenantId}:ingest`, 'crash-1', null);
    expect(begun.kind).toBe('new');
    await t.runtime.pool.query(`update keel_idempotency set locked_until = now() - interval '1 second' where key = 'crash-1'`);
    const { runIngest } = await import('../../src/ingest/run.ts');
    const at = (begun as { createdAt: Date }).createdAt.getTime();
    async function* firstHalf() {
      for (const r of records.slice(0, 250)) yield { kind: 'value' as const, value: r };
    }
    await runIngest({ store: t.svc.store, ingest: t.svc.config.ingest }, firstHalf(), { tenantId, actor: { kind: 'apiKey', id: 'x' }, correlationId: 'c', idempotency: { at, scope: `${tenantId}:ingest`, key: 'crash-1' } });
    const mid = await t.head();
    const retry = await ingest(ndjson(records), 'application/x-ndjson', { 'idempotency-key': 'crash-1' });
    expect(retry.statusCode).toBe(200);
    expect(retry.json().accepted).toBe(600);
    const added = await t.events(mid);
    expect(added).toHaveLength(350); // only the missing ones
    for (let i = 0; i < 600; i += 37) expect(await t.runtime.store.readStream(`record-${tenantId}-order-o-${7000 + i}`)).toHaveLength(1);
  });
});

describe('ingest rate limits', () => {
  it('answers 429 with Retry-After once a key has used its records budget, per key', async () => {
    const limited = await startTestService({
      config: (c) => ({ ...c, rateLimit: { ...c.rateLimit, recordsPerSecond: 10, recordBurst: 20 } }),
    });
    try {
      const s = await limited.createTenant();
      const other = await limited.issueKey(s.tenantId, 'operator', s.apiKey);
      const send = (key: string, n: number) =>
        limited.app.inject({
          method: 'POST',
          url: `/v1/tenants/${s.tenantId}/ingest`,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' },
          payload: ndjson(Array.from({ length: n }, (_, i) => rec(i))),
        });
      expect((await send(s.apiKey, 50)).statusCode).toBe(200); // within the burst to start, 30 in debt after
      const before = await limited.head();
      const r = await send(s.apiKey, 1);
      expect(r.statusCode).toBe(429);
      expect(errorOf(r).code).toBe('RATE_LIMITED');
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(3);
      expect(await limited.head()).toBe(before);
      expect((await send(other.apiKey, 5)).statusCode).toBe(200); // another key has its own budget
    } finally {
      await limited.close();
    }
  });
});
