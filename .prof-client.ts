import { randomBytes, randomUUID } from 'node:crypto';
import { canonicalHash, createSchemaRegistry, streamName } from '@keel/shared-events';
import { append } from './shared-events/src/store/postgres/append.ts';
const registry = createSchemaRegistry();
const t = randomUUID();
const payloads = Array.from({ length: 1000 }, (_, p) => { const payload = { name: `Customer ${p}`, email: `c${p}@example.com`, tags: ['gold', `segment-${p % 17}`], address: { street: `${p} Main`, city: 'Springfield', zip: String(10000 + p) }, notes: randomBytes(600).toString('base64').slice(0, 800) }; return { payload, hash: canonicalHash(payload) }; });
const bases = '{' + Array.from({ length: 1000 }, () => '-1').join(',') + '}';
const fakeClient = { query: async () => ({ rows: [['1', bases, String(Date.now())]] }), release() {} };
const pool = { connect: async () => fakeClient } as any;
const mk = (k: number, ids: boolean) => Array.from({ length: 1000 }, (_, j) => ({ streamId: streamName('record', t, `customer-${(k * 1000 + j) % 10000}`), events: [{ ...(ids ? { eventId: '0190a1b2-c3d4-7e5f-8a9b-' + String(j).padStart(12, '0') } : {}), type: 'RecordIngested', tenantId: t, actor: { kind: 'apiKey' as const, id: 'k' }, data: { source: 'crm', entityType: 'customer', externalId: String(j), payload: payloads[j]!.payload, receivedVia: 'api', contentHash: payloads[j]!.hash } }] }));
for (const [label, reg, ids] of [['full path', registry, false], ['no registry', undefined, false], ['caller ids', registry, true], ['no registry, caller ids', undefined, true]] as const) {
  const ctx = { pool, registry: reg, onAppended() {} };
  for (let w = 0; w < 30; w++) await append(ctx, mk(w, ids), false);
  let best = 1e9;
  for (let r = 0; r < 8; r++) { const batches = Array.from({ length: 10 }, (_, k) => mk(k, ids)); const t0 = performance.now(); for (const b of batches) await append(ctx, b, false); best = Math.min(best, (performance.now() - t0) / 10); }
  console.log(label.padEnd(24), 'best ms per 1000 events:', best.toFixed(2));
}
const evs = mk(0, false);
let best = 1e9; for (let r = 0; r < 8; r++) { const t0 = performance.now(); for (let k = 0; k < 10; k++) for (const a of evs) JSON.stringify(a.events[0]!.data); best = Math.min(best, (performance.now() - t0) / 10); }
console.log('JSON.stringify alone'.padEnd(24), 'best ms per 1000 events:', best.toFixed(2));
