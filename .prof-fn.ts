import pg from 'pg';
import { randomBytes, randomUUID } from 'node:crypto';
import { canonicalHash, streamName, uuidv7 } from '@keel/shared-events';
import { int4Array, int8Array, textArray, timestamptzArray, uuidArray } from './shared-events/src/store/postgres/binary.ts';
const c = new pg.Client('postgres://postgres@127.0.0.1:5432/keel_prof'); await c.connect();
const notes: string[] = []; c.on('notice', (n) => notes.push(n.message!));
const t = randomUUID();
const payload = { name: 'x', notes: randomBytes(600).toString('base64').slice(0, 900) };
const data = JSON.stringify({ source: 'crm', entityType: 'customer', externalId: '1', payload, receivedVia: 'api', contentHash: canonicalHash(payload) });
for (let r = 0; r < 15; r++) {
  const sids = Array.from({ length: 1000 }, (_, i) => streamName('record', t, `c-${(r * 1000 + i) % 10000}`)); const d = new Date();
  const a = [textArray(sids), int8Array(sids.map(() => -2)), int4Array(sids.map((_, i) => i + 1)), int4Array(sids.map(() => 0)), textArray(sids), uuidArray(sids.map(() => uuidv7())), textArray(sids.map(() => 'RecordIngested')), int4Array(sids.map(() => 2)), textArray(sids.map(() => t)), timestamptzArray(sids.map(() => d)), textArray(sids.map(() => 'apiKey')), textArray(sids.map(() => 'k')), textArray(sids.map(() => undefined)), textArray(sids.map(() => undefined)), textArray(sids.map(() => undefined)), textArray(sids.map(() => data))];
  notes.length = 0;
  await c.query(`select * from keel_append_dbg($1::text[], $2::int8[], $3::int4[], $4::int4[], $5::text[], $6::uuid[], $7::text[], $8::int4[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])`, a);
  console.log(notes.join(' | '));
}
await c.end();
