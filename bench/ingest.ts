/**
 * `npm run bench -- ingest [--seconds 60] [--records 5000] [--record-bytes 1024] [--concurrency 3]
 *                          [--baseline-seconds 60] [--warmup-seconds 5]`
 *
 * HTTP batch ingest, sustained: command-service runs as its own process (command-service/src/main.ts,
 * postgres profile) against an embedded PostgreSQL (.keel-bench/ingest, port KEEL_BENCH_PG_PORT or
 * 54341); `--concurrency` clients POST NDJSON bodies of `--records` records of ~`--record-bytes`
 * each, with fresh external ids, for `--seconds`, over keep-alive connections. Reported: accepted
 * records/s over the whole window and its worst 5-second stretch, request latency p50/p99.
 *
 * Baseline, same run, same server: the same rows (same stream ids, event ids and JSON data as the
 * store writes them) inserted raw with `INSERT ... SELECT FROM unnest(...)` into a copy of
 * keel_events (same columns and indexes), batches of `--records`, `--concurrency` connections,
 * for `--baseline-seconds`. The ratio is HTTP / raw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { commandServiceMigrations } from '@keel/command-service';
import { canonicalHash, runMigrations, startEmbeddedPostgres, storeMigrations, uuidv7 } from '@keel/shared-events';

const TARGET = 30_000;

export default async function ingestBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const seconds = opt('seconds', 60);
  const perRequest = opt('records', 5000);
  const recordBytes = opt('record-bytes', 1024);
  const concurrency = opt('concurrency', 3);
  const baselineSeconds = opt('baseline-seconds', seconds);
  const warmup = opt('warmup-seconds', 5);

  const cleanups: (() => Promise<void>)[] = [];
  try {
    const pgPort = Number(process.env.KEEL_BENCH_PG_PORT ?? 54341);
    const server = await startEmbeddedPostgres({ dataDir: resolve('.keel-bench/ingest/pg'), port: pgPort });
    cleanups.push(() => server.stop());
    const dbName = `bench_ingest_${Date.now()}`;
    const databaseUrl = await server.ensureDatabase(dbName);
    cleanups.push(async () => {
      const c = new pg.Client({ connectionString: server.adminUrl });
      await c.connect();
      await c.query(`drop database if exists ${dbName} with (force)`);
      await c.end();
    });
    await runMigrations(databaseUrl, [storeMigrations, ...commandServiceMigrations]);

    const adminKey = `bench-admin-${randomBytes(16).toString('hex')}`;
    const port = 34000 + Math.floor(Math.random() * 2000);
    const child = await startServer({ databaseUrl, port, adminKey });
    cleanups.push(() => stopServer(child));
    const base = `http://127.0.0.1:${port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency + 1 });
    cleanups.push(async () => agent.destroy());

    const tenant = JSON.parse(
      (await request(agent, base, '/v1/tenants', { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }, JSON.stringify({ name: 'bench' }))).body,
    ) as { tenantId: string; apiKey: string };
    const gen = recordGenerator(recordBytes);
    const headers = { authorization: `Bearer ${tenant.apiKey}`, 'content-type': 'application/x-ndjson' };

    // ---- HTTP
    let batchNo = 0;
    const runHttp = async (durationS: number) => {
      const latencies: number[] = [];
      const perSecond = new Map<number, number>();
      let accepted = 0;
      let failed = 0;
      const t0 = performance.now();
      const deadline = t0 + durationS * 1000;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (performance.now() < deadline) {
            const body = gen.ndjson(`b${batchNo++}`, perRequest);
            const start = performance.now();
            const r = await request(agent, base, `/v1/tenants/${tenant.tenantId}/ingest`, headers, body);
            const end = performance.now();
            if (r.status !== 200) {
              failed++;
              if (failed <= 3) console.error(`ingest answered ${r.status}: ${r.body.slice(0, 300)}`);
              if (r.status === 429) await sleep(Number(r.headers['retry-after'] ?? 1) * 1000);
              continue;
            }
            const n = (JSON.parse(r.body) as { accepted: number }).accepted;
            accepted += n;
            latencies.push(end - start);
            const sec = Math.floor((end - t0) / 1000);
            perSecond.set(sec, (perSecond.get(sec) ?? 0) + n);
          }
        }),
      );
      const elapsed = (performance.now() - t0) / 1000;
      return { accepted, failed, elapsed, latencies, perSecond };
    };
    if (warmup > 0) await runHttp(warmup);
    const h = await runHttp(seconds);
    const secs = [...Array(Math.floor(h.elapsed)).keys()].map((s) => h.perSecond.get(s) ?? 0);
    const worst5s = secs.length >= 5 ? Math.min(...secs.slice(0, secs.length - 4).map((_, i) => secs.slice(i, i + 5).reduce((a, b) => a + b, 0) / 5)) : NaN;
    const httpRate = h.accepted / h.elapsed;

    // ---- baseline: raw INSERT ... SELECT of the same rows
    const b = await rawBaseline({ databaseUrl, tenantId: tenant.tenantId, gen, perRequest, concurrency, seconds: baselineSeconds });

    const pgSettings = await settings(databaseUrl);
    return {
      setup: {
        postgres: `embedded (.keel-bench/ingest, port ${pgPort})`,
        server: 'command-service/src/main.ts as its own process (postgres profile, LOG_LEVEL=warn)',
        recordsPerRequest: perRequest,
        recordBytes: gen.lineBytes,
        concurrency,
        seconds,
        postgresSettings: pgSettings,
      },
      http: {
        recordsAccepted: h.accepted,
        failedRequests: h.failed,
        elapsedSeconds: round(h.elapsed),
        recordsPerSecond: Math.round(httpRate),
        worst5sRecordsPerSecond: Math.round(worst5s),
        mbPerSecond: round((httpRate * gen.lineBytes) / 1e6),
        requestLatencyMs: { p50: round(pct(h.latencies, 0.5)), p99: round(pct(h.latencies, 0.99)), max: round(Math.max(...h.latencies)) },
      },
      baseline: { what: 'INSERT ... SELECT FROM unnest(...) of the same rows into a copy of keel_events', ...b },
      ratio: round(httpRate / b.rowsPerSecond),
      target: { recordsPerSecond: TARGET, met: httpRate >= TARGET && worst5s >= TARGET },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => console.error('[cleanup]', e));
  }
}

// ------------------------------------------------------------------------------------ records

export function recordGenerator(recordBytes: number) {
  const filler = 'x'.repeat(Math.max(0, recordBytes - 330));
  const line = (id: string, i: number) =>
    `{"source":"shop","entityType":"order","externalId":"${id}","payload":{"orderId":"${id}","customer":{"id":"c-${i % 9973}","name":"Customer ${i % 9973}","email":"c${i % 9973}@example.test"},"lines":[{"sku":"SKU-${i % 113}","qty":${(i % 7) + 1},"price":${(i % 1000) / 10}}],"total":${(i % 5000) / 10},"currency":"EUR","status":"paid","note":"${filler}"}}\n`;
  const lineBytes = Buffer.byteLength(line('b0-0000', 0));
  return {
    lineBytes,
    ndjson(prefix: string, n: number): string {
      let s = '';
      for (let i = 0; i < n; i++) s += line(`${prefix}-${i}`, i);
      return s;
    },
    /** The rows the store would write for the same records. */
    rows(prefix: string, n: number, tenantId: string) {
      const streams: string[] = [];
      const ids: string[] = [];
      const data: string[] = [];
      for (let i = 0; i < n; i++) {
        const rec = JSON.parse(line(`${prefix}-${i}`, i)) as { source: string; entityType: string; externalId: string; payload: unknown };
        streams.push(`record-${tenantId}-${rec.entityType}-${rec.externalId}`);
        ids.push(uuidv7());
        data.push(JSON.stringify({ ...rec, receivedVia: 'api', contentHash: canonicalHash(rec.payload) }));
      }
      return { streams, ids, data };
    },
  };
}

/**
 * What PostgreSQL alone does with the same rows: they are staged once (outside the timing), then
 * `INSERT INTO <copy of keel_events> SELECT ... FROM stage` one request-sized batch per statement,
 * with fresh event ids and stream ids so every row is new, `concurrency` at a time.
 */
async function rawBaseline(o: {
  databaseUrl: string;
  tenantId: string;
  gen: ReturnType<typeof recordGenerator>;
  perRequest: number;
  concurrency: number;
  seconds: number;
}) {
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: o.concurrency });
  try {
    await pool.query(`create table bench_raw (like keel_events including all); create sequence bench_raw_seq;
                      create table bench_stage (batch int not null, ord int not null, stream_id text not null, data text not null)`);
    const staged = 8;
    for (let b = 0; b < staged; b++) {
      const r = o.gen.rows(`raw${b}`, o.perRequest, o.tenantId);
      await pool.query(
        `insert into bench_stage select $1, u.ord, u.stream_id, u.data from unnest($2::text[], $3::text[]) with ordinality as u(stream_id, data, ord)`,
        [b, r.streams, r.data],
      );
    }
    await pool.query('create index on bench_stage (batch); analyze bench_stage');
    let rows = 0;
    let rep = 0;
    const t0 = performance.now();
    const deadline = t0 + o.seconds * 1000;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (performance.now() < deadline) {
          const n = rep++;
          await pool.query(
            `insert into bench_raw (global_position, stream_position, event_id, occurred_at, schema_version, tenant_id, stream_id,
                                    type, actor_kind, actor_id, data)
             select nextval('bench_raw_seq'), 0, gen_random_uuid(), now(), 2, $2, s.stream_id || '.' || $3::int, 'RecordIngested', 'apiKey', 'bench', s.data
               from bench_stage s where s.batch = $1 order by s.ord`,
            [n % staged, o.tenantId, n],
          );
          rows += o.perRequest;
        }
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    return { rows, elapsedSeconds: round(elapsed), rowsPerSecond: Math.round(rows / elapsed) };
  } finally {
    await pool.end();
  }
}

// ------------------------------------------------------------------------------------ plumbing

/** command-service/src/main.ts as its own process (postgres profile); resolves once /ready answers 200. */
export async function startServer(o: {
  databaseUrl: string;
  port: number;
  adminKey: string;
  dataDir?: string;
  logLevel?: string;
}): Promise<ChildProcess> {
  const dataDir = resolve(o.dataDir ?? '.keel-bench/ingest/data');
  mkdirSync(dataDir, { recursive: true });
  // KEEL_BENCH_CPU_PROF=1: a V8 CPU profile of the server in .keel-bench/prof (to see where the time goes).
  const prof = process.env.KEEL_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${resolve('.keel-bench/prof')}`] : [];
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', resolve('command-service/src/main.ts')], {
    env: {
      ...process.env,
      KEEL_PROFILE: 'postgres',
      DATABASE_URL: o.databaseUrl,
      PORT: String(o.port),
      HOST: '127.0.0.1',
      KEEL_ADMIN_KEY: o.adminKey,
      KEEL_MASTER_KEY: randomBytes(32).toString('hex'),
      KEEL_DATA_DIR: dataDir,
      LOG_LEVEL: o.logLevel ?? 'warn',
      KEEL_INGEST_RECORDS_PER_SECOND: '10000000',
      KEEL_INGEST_RECORDS_BURST: '10000000',
    },
    // stdout carries the JSON logs (not wanted in the results); errors still show on stderr
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const agent = new http.Agent({ keepAlive: false });
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`command-service exited with ${child.exitCode}`);
    try {
      const r = await request(agent, `http://127.0.0.1:${o.port}`, '/ready', {}, undefined, 'GET');
      if (r.status === 200) return child;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error('command-service did not become ready');
}

export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

export function request(
  agent: http.Agent,
  base: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
  method = 'POST',
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolvePromise, reject) => {
    const req = http.request(`${base}${path}`, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function settings(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ name: string; setting: string }>(
      `select name, setting from pg_settings where name in ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'wal_level', 'full_page_writes')`,
    );
    return Object.fromEntries(r.rows.map((x) => [x.name, x.setting]));
  } finally {
    await c.end();
  }
}

export function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}
