import { getPostgreSQLEventStore } from '@keel/shared-events';
const store = getPostgreSQLEventStore({ connectionString: 'postgres://postgres@127.0.0.1:5432/keel_prof' });
const batch = Number(process.argv[2] ?? 1000);
for (let r = 0; r < 3; r++) {
  const t0 = performance.now(); const u0 = process.cpuUsage(); let n = 0; let after = 0;
  for (;;) { const p = await store.readAll({ after, maxCount: batch }); n += p.events.length; after = p.position; if (p.isEnd) break; }
  const ms = performance.now() - t0; const u = process.cpuUsage(u0);
  console.log(`${n} events, ${Math.round(n / (ms / 1000))}/s, client CPU µs/event ${((u.user + u.system) / n).toFixed(2)}, wall µs/event ${(ms * 1000 / n).toFixed(2)}`);
}
await store.close();
