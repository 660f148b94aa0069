import pg from 'pg';
import { toRecordedEvent, RAW_TYPES, EVENT_COLUMNS } from './shared-events/src/store/postgres/rows.ts';
const pool = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/keel_prof', max: 2 });
const SQL = `select ${EVENT_COLUMNS}, e.transaction_id < (select pg_snapshot_xmin(pg_current_snapshot())) from keel_events e where e.global_position > $1 order by e.global_position limit $2`;
async function viaPoolQuery(after: number) { const r = await pool.query({ name: 'a', text: SQL, values: [after, 1000], rowMode: 'array', types: RAW_TYPES } as any); const ev = r.rows.map((x: any) => toRecordedEvent(x)); return ev.length ? ev[ev.length - 1]!.globalPosition : -1; }
async function viaRows(after: number) { const client = await pool.connect(); const ev: any[] = []; await new Promise<void>((res, rej) => { const q = new (pg as any).Query({ name: 'b', text: SQL, values: [after, 1000], rowMode: 'array', types: RAW_TYPES }); q.on('row', (r: any) => ev.push(toRecordedEvent(r))); q.on('end', res); q.on('error', rej); client.query(q); }); client.release(); return ev.length ? ev[ev.length - 1]!.globalPosition : -1; }
for (let r = 0; r < 3; r++) for (const [name, f] of [['poolQuery', viaPoolQuery], ['rows', viaRows]] as const) {
  const t0 = performance.now(); const u0 = process.cpuUsage(); let after = 0, n = 0;
  for (;;) { const p = await f(after); if (p < 0) break; n += 1000; after = p; }
  const ms = performance.now() - t0; const u = process.cpuUsage(u0);
  console.log(name, Math.round(n / (ms / 1000)), '/s cpu µs/ev', ((u.user + u.system) / n).toFixed(2));
}
await pool.end();
