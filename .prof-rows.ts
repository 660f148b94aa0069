import pg from 'pg';
import { toRecordedEvent, RAW_TYPES, EVENT_COLUMNS } from './shared-events/src/store/postgres/rows.ts';
const c = new pg.Client('postgres://postgres@127.0.0.1:5432/keel_prof2'); await c.connect();
const r = await c.query({ text: `select ${EVENT_COLUMNS} from keel_events e order by global_position limit 2000`, rowMode: 'array', types: RAW_TYPES } as any);
const rows = r.rows as any[];
console.log(rows[0]);
function time(label: string, f: () => void) { for (let w = 0; w < 20; w++) f(); let best = 1e9; for (let k = 0; k < 7; k++) { const t0 = performance.now(); for (let j = 0; j < 10; j++) f(); best = Math.min(best, (performance.now() - t0) / 10); } console.log(label, (best / rows.length * 1000).toFixed(3), 'µs/row'); }
time('toRecordedEvent', () => { for (const x of rows) toRecordedEvent(x); });
time('JSON.parse data', () => { for (const x of rows) JSON.parse(x[14]); });
time('dates', () => { for (const x of rows) { new Date(Math.round(Number(x[4]))); new Date(Math.round(Number(x[5]))); } });
time('numbers', () => { for (const x of rows) { Number(x[0]); Number(x[1]); Number(x[3]); } });
await c.end();
