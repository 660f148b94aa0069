import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { createSchemaRegistry, getPostgreSQLEventStore } from '@keel/shared-events';
import { chainBatch } from '../projection-service/src/audit/store.ts';
const url = 'postgres://postgres@127.0.0.1:5432/keel_bench_read_2a6f70c7';
const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry() });
let after = 0; const all = [];
for (;;) { const r = await store.readAll({ after, maxCount: 5000 }); all.push(...r.events); after = r.position; if (r.isEnd) break; }
const rows = chainBatch(all, new Map(), { checkpointEvery: 0 }).rows;
const esc = (v: string | null) => (v === null ? '\\N' : v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r'));
let t = Date.now();
const lines = rows.map((r) => [r.tenantId, String(r.globalPosition), String(r.chainSeq), r.streamId, String(r.streamPosition), r.eventId, r.type, String(r.schemaVersion), r.actorKind, r.actorId, r.subject, r.occurredAt.toISOString(), r.recordedAt.toISOString(), r.correlationId, r.causationId, r.payload, '\\\\x' + r.hash.toString('hex')].map((v, i) => (i === 16 ? v : esc(v))).join('\t'));
console.log('format', Date.now() - t, 'ms');
writeFileSync('/tmp/psprof-rows.tsv', lines.join('\n') + '\n');
await store.close();
