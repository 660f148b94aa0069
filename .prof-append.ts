import pg from 'pg';
import { randomBytes, randomUUID } from 'node:crypto';
import { canonicalHash, createSchemaRegistry, getPostgreSQLEventStore, runMigrations, storeMigrations, streamName } from '@keel/shared-events';
const admin = 'postgres://postgres@127.0.0.1:5432/postgres';
const c = new pg.Client(admin); await c.connect(); await c.query('drop database if exists keel_prof with (force)'); await c.query('create database keel_prof'); await c.end();
const url = 'postgres://postgres@127.0.0.1:5432/keel_prof';
await runMigrations(url, [storeMigrations]);
const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry() });
const t = randomUUID();
const payloads = Array.from({ length: 1000 }, (_, p) => { const payload = { name: `Customer ${p}`, email: `c${p}@example.com`, tags: ['gold', `segment-${p % 17}`], address: { street: `${p} Main`, city: 'Springfield', zip: String(10000 + p) }, notes: randomBytes(600).toString('base64').slice(0, 800) }; return { payload, hash: canonicalHash(payload) }; });
const N = Number(process.argv[2] ?? 50);
let clientMs = 0;
const t0 = performance.now();
for (let k = 0; k < N; k++) {
  const appends = Array.from({ length: 1000 }, (_, j) => ({ streamId: streamName('record', t, `customer-${(k * 1000 + j) % 10000}`), events: [{ type: 'RecordIngested', tenantId: t, actor: { kind: 'apiKey' as const, id: 'k' }, data: { source: 'crm', entityType: 'customer', externalId: String(j), payload: payloads[j]!.payload, receivedVia: 'api', contentHash: payloads[j]!.hash } }] }));
  await store.appendBatch(appends);
}
const ms = performance.now() - t0;
console.log('events/s', Math.round(N * 1000 / (ms / 1000)), 'ms per call', (ms / N).toFixed(1));
await store.close();
