import { randomUUID } from 'node:crypto';
import { canonicalHash, createSchemaRegistry, getPostgreSQLEventStore, streamName } from '@keel/shared-events';
const url = 'postgres://postgres@127.0.0.1:5432/keel_prof2';
const t = randomUUID();
const payload = { a: 1 };
const ev = (i: number) => ({ type: 'RecordIngested', tenantId: t, actor: { kind: 'apiKey' as const, id: 'k' }, data: { source: 'crm', entityType: 'customer', externalId: String(i), payload, receivedVia: 'api', contentHash: canonicalHash(payload) } });
for (const notify of [true, false, true, false]) {
  const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry(), notify });
  for (let i = 0; i < 50; i++) await store.appendToStream(streamName('record', t, `c${i}`), [ev(i)]);
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < 500; i++) { const s = performance.now(); await store.appendToStream(streamName('record', t, `c${i % 100}`), [ev(i)]); lat.push(performance.now() - s); }
  lat.sort((a, b) => a - b);
  console.log('notify', notify, 'per sec', Math.round(500 / ((performance.now() - t0) / 1000)), 'p50', lat[250]!.toFixed(2), 'p99', lat[495]!.toFixed(2));
  await store.close();
}
