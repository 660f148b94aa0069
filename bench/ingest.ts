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
 * Baseline, same run, same server: the very rows the HTTP phase stored, copied to a staging table,
 * then `INSERT ... SELECT` into a copy of keel_events (same columns and indexes) in chunks of
 * `--records` rows, `--concurrency` sessions, for `--baseline-seconds`. The ratio is HTTP / raw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { commandServiceMigrations } from '@keel/command-service';
import { runMigrations, storeMigrations } from '@keel/shared-events';
import { embeddedBenchDatabase, loadAverages, numberOption, percentile, type Cleanup } from './support.ts';

const TARGET = 30_000;

export default async function ingestBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => numberOption(args, name, dflt);
  const seconds = opt('seconds', 60);
  const perRequest = opt('records', 5000);
  const recordBytes = opt('record-bytes', 1024);
  const concurrency = opt('concurrency', 3);
  const baselineSeconds = opt('baseline-seconds', seconds);
  const warmup = opt('warmup-seconds', 5);

  const cleanups: Cleanup[] = [];
  const loadStart = loadAverages();
  try {
    const { url: databaseUrl, port: pgPort } = await embeddedBenchDatabase('ingest', cleanups, { port: 54341 });
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
    const cpu0 = cpuSnapshot(child.pid!, resolve('.keel-bench/ingest/pg'));
    const h = await runHttp(seconds);
    const cpu = cpuUsed(cpu0, cpuSnapshot(child.pid!, resolve('.keel-bench/ingest/pg')));
    const serverMetrics = await request(agent, base, '/metrics', {}, undefined, 'GET');
    const appendBatch = histogramMean(serverMetrics.body, 'keel_store_append_duration_seconds', 'kind="batch"');
    const secs = [...Array(Math.floor(h.elapsed)).keys()].map((s) => h.perSecond.get(s) ?? 0);
    const worst5s = secs.length >= 5 ? Math.min(...secs.slice(0, secs.length - 4).map((_, i) => secs.slice(i, i + 5).reduce((a, b) => a + b, 0) / 5)) : NaN;
    const httpRate = h.accepted / h.elapsed;

    // ---- baseline: raw INSERT ... SELECT of the same rows
    const b = await rawBaseline({ databaseUrl, perRequest, concurrency, seconds: baselineSeconds });

    const pgSettings = await settings(databaseUrl);
    return {
      setup: {
        postgres: `embedded (.keel-bench/ingest, port ${pgPort})`,
        server: `command-service/src/main.ts as its own process (postgres profile, LOG_LEVEL=warn, node flags: ${process.env.KEEL_BENCH_SERVER_NODE_FLAGS || 'none'})`,
        recordsPerRequest: perRequest,
        recordBytes: gen.lineBytes,
        concurrency,
        seconds,
        postgresSettings: pgSettings,
        loadAverageAtStartAndEnd: [loadStart, loadAverages()],
        note: 'a shared 2-core machine: load from other processes lowers every figure, the same-run baseline included',
      },
      http: {
        recordsAccepted: h.accepted,
        failedRequests: h.failed,
        elapsedSeconds: round(h.elapsed),
        recordsPerSecond: Math.round(httpRate),
        worst5sRecordsPerSecond: Math.round(worst5s),
        mbPerSecond: round((httpRate * gen.lineBytes) / 1e6),
        requestLatencyMs: { p50: round(pct(h.latencies, 0.5)), p99: round(pct(h.latencies, 0.99)), max: round(Math.max(...h.latencies)) },
        storeAppendBatchMeanMs: appendBatch,
        cpuSecondsDuringRun: cpu,
      },
      baseline: { what: 'INSERT ... SELECT of the very rows the HTTP phase stored, from a staging table into a copy of keel_events (same columns and indexes), request-sized chunks, same concurrency', ...b },
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
  };
}

/**
 * What PostgreSQL alone does with the same rows: the rows the HTTP phase stored (same ids,
 * stream ids, JSON data, as the store wrote them) are copied to a staging table outside the
 * timing, then `INSERT INTO <copy of keel_events> SELECT ... FROM staging` one request-sized
 * chunk per statement (its own transaction, as each append is), `concurrency` sessions at a
 * time, for up to `seconds` or until the rows run out.
 */
async function rawBaseline(o: { databaseUrl: string; perRequest: number; concurrency: number; seconds: number }) {
  const pool = new pg.Pool({ connectionString: o.databaseUrl, max: o.concurrency });
  try {
    const columns =
      'global_position, transaction_id, stream_position, event_id, occurred_at, recorded_at, schema_version, tenant_id, stream_id, type, actor_kind, actor_id, correlation_id, causation_id, traceparent, data';
    await pool.query('create table bench_raw (like keel_events including all)');
    await pool.query(
      `create table bench_staging as select row_number() over (order by global_position) as rn, ${columns} from keel_events where type = 'RecordIngested'`,
    );
    await pool.query('create index on bench_staging (rn); analyze bench_staging');
    const available = Number((await pool.query<{ n: string }>('select count(*) as n from bench_staging')).rows[0]!.n);
    await pool.query('checkpoint');
    let rows = 0;
    let next = 0;
    const t0 = performance.now();
    const deadline = t0 + o.seconds * 1000;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (performance.now() < deadline && next < available) {
          const from = next;
          next += o.perRequest;
          const r = await pool.query(`insert into bench_raw select ${columns} from bench_staging where rn > $1 and rn <= $2`, [from, from + o.perRequest]);
          rows += r.rowCount ?? 0;
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
  // KEEL_BENCH_SERVER_NODE_FLAGS: node flags for the server (e.g. --max-semi-space-size=64).
  const nodeFlags = (process.env.KEEL_BENCH_SERVER_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeFlags, ...prof, '--import', 'tsx', resolve('command-service/src/main.ts')], {
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

/** CPU seconds so far of the server process, of the PostgreSQL server (postmaster and its children) and of this process. */
function cpuSnapshot(serverPid: number, pgDataDir: string) {
  const tick = 100; // USER_HZ
  const stat = (pid: number) => {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(parts[1]), cpu: (Number(parts[11]) + Number(parts[12])) / tick };
    } catch {
      return undefined;
    }
  };
  let pg = 0;
  try {
    const postmaster = Number(readFileSync(`${pgDataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      const st = stat(Number(d));
      if (st && (Number(d) === postmaster || st.ppid === postmaster)) pg += st.cpu;
    }
  } catch {
    pg = NaN;
  }
  const me = process.cpuUsage();
  return { server: stat(serverPid)?.cpu ?? NaN, postgres: pg, client: (me.user + me.system) / 1e6, at: performance.now() };
}

/** Backends that exited during the run are missed: the PostgreSQL figure is a lower bound. */
function cpuUsed(a: ReturnType<typeof cpuSnapshot>, b: ReturnType<typeof cpuSnapshot>) {
  return {
    wall: round((b.at - a.at) / 1000),
    commandService: round(b.server - a.server),
    postgres: round(b.postgres - a.postgres),
    loadClient: round(b.client - a.client),
  };
}

function histogramMean(metrics: string, name: string, labels: string): number {
  const num = (suffix: string) => Number(new RegExp(`^${name}_${suffix}\\{${labels}\\} ([0-9.e+-]+)$`, 'm').exec(metrics)?.[1]);
  return round((num('sum') / num('count')) * 1000);
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
  return percentile([...xs].sort((a, b) => a - b), p)!;
}

export function round(x: number): number {
  return Math.round(x * 100) / 100;
}
