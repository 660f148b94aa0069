import { randomBytes, randomFillSync } from 'node:crypto';
import { canonicalHash } from '@keel/shared-events';
import { uuidv7 } from './shared-events/src/ids.ts';
const payloads = Array.from({ length: 1000 }, (_, p) => { const payload: any = { name: `Customer ${p}`, email: `c${p}@example.com`, tags: ['gold','newsletter',`segment-${p%17}`], address: { street: `${p} Main`, city: 'Springfield', zip: String(10000+p) }, notes: randomBytes(600).toString('base64').slice(0, 800) }; return { payload, hash: canonicalHash(payload) }; });
const evs = Array.from({ length: 1000 }, (_, i) => ({ source: 'crm', entityType: 'customer', externalId: String(i), payload: payloads[i]!.payload, receivedVia: 'api', contentHash: payloads[i]!.hash }));
function time(label: string, f: () => void) { for (let w = 0; w < 30; w++) f(); let best = 1e9; for (let r = 0; r < 5; r++) { const t0 = performance.now(); for (let k = 0; k < 20; k++) f(); best = Math.min(best, (performance.now() - t0) / 20); } console.log(label, best.toFixed(2), 'ms per 1000'); }
time('stringify', () => { for (const e of evs) JSON.stringify(e); });
time('stringify payload only', () => { for (const e of evs) JSON.stringify(e.payload); });
time('uuidv7', () => { for (let i = 0; i < 1000; i++) uuidv7(); });
time('randomBytes16', () => { for (let i = 0; i < 1000; i++) randomBytes(16); });
const pool = Buffer.alloc(16 * 1000);
time('randomFill pooled', () => { randomFillSync(pool); for (let i = 0; i < 1000; i++) pool.toString('hex', i * 16, i * 16 + 16); });
