import pg from 'pg';
import { createSchemaRegistry, getPostgreSQLEventStore } from '@keel/shared-events';
import { chainBatch } from '../projection-service/src/audit/store.ts';
const url = 'postgres://postgres@127.0.0.1:5432/keel_bench_read_2a6f70c7';
const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry() });
const pool = new pg.Pool({ connectionString: url });
let after = 0; const all = [];
for (;;) { const r = await store.readAll({ after, maxCount: 5000 }); all.push(...r.events); after = r.position; if (r.isEnd) break; }
const rows = chainBatch(all, new Map(), { checkpointEvery: 0 }).rows;
const c = await pool.connect();
await c.query('drop table if exists zz_x; create table zz_x (like audit_events including defaults); alter table zz_x add primary key (tenant_id, global_position)');
const J = JSON.stringify;
let t = Date.now();
for (let i = 0; i < rows.length; i += 5000) {
  const part = rows.slice(i, i + 5000);
  let text = '[';
  part.forEach((r, k) => {
    if (k) text += ',';
    text += `{"tenant_id":${J(r.tenantId)},"global_position":${r.globalPosition},"chain_seq":${r.chainSeq},"stream_id":${J(r.streamId)},"stream_position":${r.streamPosition},"event_id":${J(r.eventId)},"type":${J(r.type)},"schema_version":${r.schemaVersion},"actor_kind":${J(r.actorKind)},"actor_id":${J(r.actorId)},"subject":${J(r.subject)},"occurred_at":"${r.occurredAt.toISOString()}","recorded_at":"${r.recordedAt.toISOString()}","correlation_id":${J(r.correlationId)},"causation_id":${J(r.causationId)},"payload":${r.payload},"hash":"\\\\x${r.hash.toString('hex')}"}`;
  });
  text += ']';
  await c.query('insert into zz_x select * from json_populate_recordset(null::zz_x, $1::json)', [text]);
}
console.log('json_populate_recordset', Date.now() - t, 'ms');
const check = await c.query('select payload::text, encode(hash, $1) as h from zz_x order by global_position limit 1', ['hex']);
console.log(check.rows[0].payload.slice(0, 80), check.rows[0].h === rows[0].hash.toString('hex'), check.rows[0].payload === rows[0].payload);
await c.query('truncate zz_x');
t = Date.now();
for (let i = 0; i < rows.length; i += 3000) {
  const part = rows.slice(i, i + 3000);
  const params: unknown[] = [];
  const tuples: string[] = [];
  for (const r of part) {
    const b = params.length;
    params.push(r.tenantId, r.globalPosition, r.chainSeq, r.streamId, r.streamPosition, r.eventId, r.type, r.schemaVersion, r.actorKind, r.actorId, r.subject, r.occurredAt.toISOString(), r.recordedAt.toISOString(), r.correlationId, r.causationId, r.payload, r.hash);
    tuples.push('(' + Array.from({ length: 17 }, (_, k) => `$${b + k + 1}`).join(',') + ')');
  }
  await c.query(`insert into zz_x values ${tuples.join(',')}`, params);
}
console.log('multi VALUES', Date.now() - t, 'ms');
await c.query('drop table zz_x');
c.release(); await pool.end(); await store.close();
