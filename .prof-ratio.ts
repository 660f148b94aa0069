import pg from 'pg';
import { randomBytes, randomUUID } from 'node:crypto';
import { canonicalHash, createSchemaRegistry, getPostgreSQLEventStore, runMigrations, storeMigrations, streamName } from '@keel/shared-events';
const admin = 'postgres://postgres@127.0.0.1:5432/postgres';
const c = new pg.Client(admin); await c.connect(); await c.query('drop database if exists keel_prof with (force)'); await c.query('create database keel_prof'); await c.end();
const url = 'postgres://postgres@127.0.0.1:5432/keel_prof';
await runMigrations(url, [storeMigrations]);
const reg = process.argv[3] === 'noreg' ? undefined : createSchemaRegistry();
const store = getPostgreSQLEventStore({ connectionString: url, registry: reg });
const pool = new pg.Pool({ connectionString: url, max: 2 });
await pool.query('create table bb (like keel_events including all); create table stg (like keel_events including all)');
const t = randomUUID();
const payloads = Array.from({ length: 1000 }, (_, p) => { const payload = { name: `Customer ${p}`, email: `c${p}@example.com`, tags: ['gold', `segment-${p % 17}`], address: { street: `${p} Main`, city: 'Springfield', zip: String(10000 + p) }, notes: randomBytes(600).toString('base64').slice(0, 800) }; return { payload, hash: canonicalHash(payload) }; });
const N = Number(process.argv[2] ?? 30);
const mk = (k: number) => Array.from({ length: 1000 }, (_, j) => ({ streamId: streamName('record', t, `customer-${(k * 1000 + j) % 10000}`), events: [{ type: 'RecordIngested', tenantId: t, actor: { kind: 'apiKey' as const, id: 'k' }, data: { source: 'crm', entityType: 'customer', externalId: String(j), payload: payloads[j]!.payload, receivedVia: 'api', contentHash: payloads[j]!.hash } }] }));
// fill staging with N chunks first (via the store, then copy)
for (let k = 0; k < N; k++) await store.appendBatch(mk(k));
await pool.query('insert into stg select * from keel_events'); await pool.query('vacuum analyze stg');
const lo = Number((await pool.query('select min(global_position) m from stg')).rows[0].m);
let ours = 0, base = 0;
for (let k = 0; k < N; k++) {
  let s = performance.now(); await store.appendBatch(mk(N + k)); ours += performance.now() - s;
  s = performance.now(); await pool.query('insert into bb select * from stg where global_position >= $1 and global_position < $2', [lo + k * 1000, lo + (k + 1) * 1000]); base += performance.now() - s;
}
console.log(`ours ${(ours / N).toFixed(1)} ms/call, baseline ${(base / N).toFixed(1)} ms/chunk, ratio ${(base / ours).toFixed(2)}`);
await store.close(); await pool.end();
