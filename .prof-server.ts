import pg from 'pg';
import { randomBytes, randomUUID } from 'node:crypto';
import { canonicalHash, streamName, uuidv7 } from '@keel/shared-events';
import { int4Array, int8Array, textArray, timestamptzArray, uuidArray } from './shared-events/src/store/postgres/binary.ts';
const url = 'postgres://postgres@127.0.0.1:5432/keel_smoke';
const pool = new pg.Pool({ connectionString: url, max: 2 });
await pool.query('drop table if exists pb; create table pb (like keel_events including all); drop table if exists ps; create table ps (like keel_events including all)');
const t = randomUUID();
const payload = { name: 'x', notes: randomBytes(600).toString('base64').slice(0, 900) };
const data = JSON.stringify({ source: 'crm', entityType: 'customer', externalId: '1', payload, receivedVia: 'api', contentHash: canonicalHash(payload) });
let round = 0;
function args(n: number) {
  const sids = Array.from({ length: n }, (_, i) => streamName('record', t, `c-${round}-${i}`)); round++;
  const d = new Date();
  return [textArray(sids), int8Array(sids.map(() => -2)), int4Array(sids.map((_, i) => i + 1)), int4Array(sids.map(() => 0)), textArray(sids), uuidArray(sids.map(() => uuidv7())), textArray(sids.map(() => 'RecordIngested')), int4Array(sids.map(() => 2)), textArray(sids.map(() => t)), timestamptzArray(sids.map(() => d)), textArray(sids.map(() => 'apiKey')), textArray(sids.map(() => 'k')), textArray(sids.map(() => undefined)), textArray(sids.map(() => undefined)), textArray(sids.map(() => undefined)), textArray(sids.map(() => data))];
}
const sql = `explain (analyze, format json) select * from keel_append($1::text[], $2::int8[], $3::int4[], $4::int4[], $5::text[], $6::uuid[], $7::text[], $8::int4[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[])`;
const direct = `explain (analyze, format json) insert into pb (global_position, stream_position, event_id, occurred_at, schema_version, tenant_id, stream_id, type, actor_kind, actor_id, correlation_id, causation_id, traceparent, data)
 select $17::int8 + u.ord, u.off, u.id, u.occurred_at, u.version, u.tenant_id, u.stream_id, u.type, u.actor_kind, u.actor_id, u.c, u.ca, u.tp, u.data from unnest($3::int4[], $4::int4[], $5::text[], $6::uuid[], $7::text[], $8::int4[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[]) with ordinality as u(si, off, stream_id, id, type, version, tenant_id, occurred_at, actor_kind, actor_id, c, ca, tp, data, ord) where $1::text[] is not null and $2::int8[] is not null`;
const ex = (r: any) => r.rows[0]['QUERY PLAN'][0]['Execution Time'] as number;
const res: Record<string, number[]> = { append: [], direct: [], baseline: [] };
let pos = 1e9;
for (let k = 0; k < 25; k++) {
  res.append!.push(ex(await pool.query(sql, args(1000))));
  const a = args(1000); res.direct!.push(ex(await pool.query(direct, [...a, pos]))); pos += 2000;
  res.baseline!.push(ex(await pool.query(`explain (analyze, format json) insert into ps select * from pb where global_position > $1 and global_position <= $1 + 1000`, [pos - 2000])));
}
for (const [k, v] of Object.entries(res)) { v.sort((a, b) => a - b); console.log(k, 'min', v[0]!.toFixed(1), 'median', v[12]!.toFixed(1), 'ms'); }
await pool.end();
