import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestService, type TestService } from '../support.ts';

/**
 * NDJSON ingest runs on worker threads (KEEL_INGEST_THREADS, default 2 on a multi-core machine)
 * or in the request thread (0): the same body must give the same answer and the same events.
 */
const services: Record<string, TestService> = {};
beforeAll(async () => {
  for (const threads of [0, 2])
    services[threads] = await startTestService({
      config: (c) => ({ ...c, ingest: { ...c.ingest, batchSize: 100, maxRecordBytes: 2048, threads } }),
    });
});
afterAll(async () => {
  for (const t of Object.values(services)) await t.close();
});

const lines = [
  ...Array.from({ length: 450 }, (_, i) =>
    JSON.stringify({
      source: 'crm',
      entityType: 'contact',
      externalId: `c-${i}`,
      payload: { z: i, a: { y: 'é', b: [i] } },
    }),
  ),
  '{"source": "crm", "entityType": ', // invalid JSON
  JSON.stringify({ source: 'crm', entityType: 'contact', externalId: 'big', payload: { s: 'x'.repeat(3000) } }), // over maxRecordBytes
  JSON.stringify({ source: 'crm', entityType: 'bad-type', externalId: 'x', payload: {} }),
];

async function ingestInto(t: TestService, body: string, headers: Record<string, string> = {}) {
  const { tenantId, apiKey } = await t.createTenant();
  const before = await t.head();
  const r = await t.app.inject({
    method: 'POST',
    url: `/v1/tenants/${tenantId}/ingest`,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/x-ndjson', ...headers },
    payload: body,
  });
  const events = (await t.events(before)).filter((e) => e.type === 'RecordIngested');
  return { r, tenantId, events };
}

describe('NDJSON ingest on threads and in the request thread', () => {
  it('uses threads only when configured', () => {
    expect(services[2]!.svc.ingestThreads).toBeDefined();
    expect(services[0]!.svc.ingestThreads).toBeUndefined();
  });

  it('gives the same answer and stores the same events', async () => {
    const body = lines.join('\n') + '\n';
    const [a, b] = [await ingestInto(services[0]!, body), await ingestInto(services[2]!, body)];
    for (const x of [a, b]) expect(x.r.statusCode).toBe(200);
    const strip = (o: { globalPosition: number }) => ({ ...o, globalPosition: 0 });
    expect(strip(b.r.json())).toEqual(strip(a.r.json()));
    expect(a.r.json()).toMatchObject({ accepted: 450, rejectedCount: 3 });
    const shape = (x: typeof a) =>
      x.events
        .map((e) => ({
          stream: e.streamId.replace(x.tenantId, 'T'),
          pos: e.streamPosition,
          data: e.data,
          corr: typeof e.correlationId,
        }))
        .sort((p, q) => p.stream.localeCompare(q.stream));
    expect(shape(b)).toEqual(shape(a));
    expect(b.events).toHaveLength(450);
  });

  it('a body over the limit is refused the same way (413), keeping what came before it', async () => {
    for (const threads of [0, 2]) {
      const limited = await startTestService({
        config: (c) => ({ ...c, ingest: { ...c.ingest, batchSize: 100, maxBytes: 64 * 1024, threads } }),
      });
      const body = Array.from({ length: 2000 }, (_, i) =>
        JSON.stringify({ source: 's', entityType: 'e', externalId: `x${i}`, payload: { i } }),
      ).join('\n');
      const { r } = await ingestInto(limited, body);
      expect(r.statusCode, `threads=${threads}`).toBe(413);
      expect(r.json().error.code).toBe('PAYLOAD_TOO_LARGE');
      await limited.close();
    }
  });

  it('an Idempotency-Key replays the first answer on the threaded path too', async () => {
    const t = services[2]!;
    const { tenantId, apiKey } = await t.createTenant();
    const body = lines.slice(0, 120).join('\n');
    const send = () =>
      t.app.inject({
        method: 'POST',
        url: `/v1/tenants/${tenantId}/ingest`,
        headers: {
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/x-ndjson',
          'idempotency-key': 'k-1',
        },
        payload: body,
      });
    const first = await send();
    const before = await t.head();
    const again = await send();
    expect(first.statusCode).toBe(200);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(await t.events(before)).toHaveLength(0);
  });
});
