/**
 * `npm run bench -- read [--events 1000000] [--payload-bytes 400] [--queries 200] [--batch 5000] [--keep]`
 *
 * The read side (projection-service), on one database:
 *
 * 1. Load: --events events into the PostgreSQL event store (appendBatch, the real adapter): one
 *    "big" tenant holds --events events, nine others hold --events/9 between them (so the big
 *    tenant is one among 10). Mostly RecordIngested with --payload-bytes payloads, ~3% other types,
 *    20 actors, a correlation id per 10 events.
 * 2. Rebuild of the audit projection (`rebuildProjection`: store.readAll → canonical form +
 *    SHA-256 chain → shadow table → indexes → swap), events/s. Baseline in the same run: a raw
 *    `INSERT ... SELECT` of the same rows from keel_events into a table shaped like audit_events
 *    (hash = sha256 of the data, no chain), then the same primary key and indexes. Ratio.
 * 3. Audit queries: p50/p95/p99 of filtered pages of 100 over the big tenant, through the HTTP
 *    route (auth, parsing, RLS transaction, serialization; app.inject), per filter kind and overall.
 *    Baseline: the same SQL run bare on the pool. EXPLAIN (ANALYZE, BUFFERS) of each kind is kept.
 * 4. Export: the whole big tenant as NDJSON over a real socket to a client in a child process,
 *    rows/s and the server process's peak RSS while streaming. Baseline: the same rows read in the same keyset chunks with no formatting.
 *
 * PostgreSQL: DATABASE_URL if set (a fresh database is created and dropped), else an embedded
 * server in .keel-bench/read on port KEEL_BENCH_PG_PORT (default 54332).
 */
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import {
  applyAuthEventsInTransaction,
  authMigrations,
  busMigrations,
  canonicalHash,
  createBaseApp,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  hashSecret,
  newApiKey,
  runMigrations,
  storeMigrations,
  streamName,
  uuidv7,
} from '@keel/shared-events';
import type { KeelRuntime, NewEvent, StreamAppend } from '@keel/shared-events';
import {
  auditPageSql,
  loadProjectionConfig,
  mountProjectionService,
  parseAuditPage,
  verifyAuditChain,
  projectionServiceMigrations,
  rebuildIndexMemoryMB,
  rebuildProjection,
} from '@keel/projection-service';
import {
  benchDatabase,
  loadAverage1m,
  loadAverage1mSince,
  numberOption,
  profiled,
  runCleanups,
  type Cleanup,
} from './support.ts';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });

export default async function readBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => {
    const positional = args.find((a) => /^\d+$/.test(a));
    if (name === 'events' && !args.includes(`--${name}`) && positional) return Number(positional);
    return numberOption(args, name, dflt);
  };
  const bigEvents = opt('events', 1_000_000);
  const payloadBytes = opt('payload-bytes', 400);
  const queriesPerKind = opt('queries', 200);
  const batch = opt('batch', 5000);
  const keep = args.includes('--keep');
  const cleanups: Cleanup[] = [];
  const t0 = Date.now();
  const progress = (line: string) => process.stderr.write(`[read] ${line}\n`);
  try {
    const { url: databaseUrl } = await benchDatabase('read', cleanups, {
      dataDir: '.keel-bench/read',
      port: 54332,
      settings: { max_wal_size: '8GB', checkpoint_timeout: '30min' },
      keep,
    });
    await runMigrations(databaseUrl, [storeMigrations, busMigrations, authMigrations, ...projectionServiceMigrations]);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 12 });
    cleanups.push(() => pool.end());
    const registry = createSchemaRegistry();
    const store = getPostgreSQLEventStore({ connectionString: databaseUrl, registry, logger, poolSize: 4 });
    cleanups.push(() => store.close());
    const runtime: KeelRuntime = {
      config: {
        profile: 'postgres',
        port: 0,
        host: '127.0.0.1',
        dataDir: resolve('.keel-bench/read-data'),
        databaseUrl,
        embeddedPgPort: 0,
        kafkaBrokers: [],
        logLevel: 'warn',
      },
      databaseUrl,
      pool,
      store,
      registry,
      logger,
      onClose: () => undefined,
    };

    // ------------------------------------------------------------------------------- 1. load
    const tenants = Array.from({ length: 10 }, () => uuidv7());
    const big = tenants[0]!;
    const auditorKey = await issueAuditorKey(runtime, big);
    const others = Math.floor(bigEvents / 9);
    const loadStart = Date.now();
    let loaded = 0;
    const plan: [string, number][] = [
      [big, bigEvents],
      ...tenants.slice(1).map((t): [string, number] => [t, Math.floor(others / 9)]),
    ];
    for (const [tenant, count] of plan) {
      for (let from = 0; from < count; from += batch) {
        const n = Math.min(batch, count - from);
        await store.appendBatch(generate(tenant, from, n, payloadBytes));
        loaded += n;
        if ((loaded / batch) % 40 === 0)
          progress(`loaded ${loaded.toLocaleString('en-US')} events (${rate(loaded, loadStart)}/s)`);
      }
    }
    const loadSecs = (Date.now() - loadStart) / 1000;
    const totalEvents = Number((await pool.query('select count(*) as n from keel_events')).rows[0].n);
    progress(`loaded ${totalEvents.toLocaleString('en-US')} events in ${loadSecs.toFixed(1)} s`);
    await pool.query('vacuum analyze keel_events');

    // ---------------------------------------------------------------------------- 2. rebuild
    let lastLine = 0;
    const loadBefore = loadAverage1m();
    // When each phase began (ms since the start): the replay and the index builds cost differently.
    const phaseAt: Partial<Record<string, number>> = {};
    const rebuildStart = Date.now();
    const rebuild = await profiled('read-rebuild', () =>
      rebuildProjection(runtime, 'audit', {
        onProgress: (p) => {
          phaseAt[p.phase] ??= Date.now() - rebuildStart;
          if (Date.now() - lastLine > 10_000 || p.phase !== 'replaying') {
            lastLine = Date.now();
            progress(
              `rebuild ${p.phase}: ${p.events.toLocaleString('en-US')} events, ${p.eventsPerSecond.toLocaleString('en-US')}/s`,
            );
          }
        },
      }),
    );
    const phaseSeconds = (from: string, to: string) => round(((phaseAt[to] ?? 0) - (phaseAt[from] ?? 0)) / 1000);
    const baseline = await insertSelectBaseline(pool);
    const rebuildLoad = loadAverage1mSince(loadBefore);
    progress(`baseline INSERT ... SELECT: ${baseline.rowsPerSec.toLocaleString('en-US')} rows/s`);
    await pool.query('vacuum analyze audit_events');

    // ---------------------------------------------------------------------------- 3. queries
    const config = loadProjectionConfig(runtime.config, {
      KEEL_AUDIT_SIGNING_KEY: randomBytes(32).toString('hex'),
      KEEL_READY_MAX_LAG: '1000000000',
    });
    process.env.KEEL_ADMIN_KEY ??= `keel_bench_admin_${randomBytes(16).toString('hex')}`;
    const app = await createBaseApp({ logger, defaultMetrics: false, docs: false });
    await mountProjectionService(app, runtime, { config });
    await app.ready();
    cleanups.push(() => app.close());
    const queries = await queryBench(pool, app, big, auditorKey, queriesPerKind);
    progress(`queries: p95 ${queries.overall.p95Ms} ms over ${queries.overall.count} pages`);

    // ----------------------------------------------------------------------------- 4. export
    const exported = await exportBench(app, pool, big, auditorKey);
    progress(
      `export: ${exported.export.rowsPerSec.toLocaleString('en-US')} rows/s, peak RSS ${exported.export.peakRssMiB} MiB`,
    );

    // ----------------------------------------------------------------- 5. verify (no target)
    const tv = Date.now();
    const verified = await verifyAuditChain(runtime, big, { config });
    const verifySecs = (Date.now() - tv) / 1000;
    if (!verified.ok) throw new Error(`the rebuilt chain does not verify: ${JSON.stringify(verified)}`);
    progress(`verify: ${verified.checked.toLocaleString('en-US')} rows in ${verifySecs.toFixed(1)} s`);

    const tableSize = (
      await pool.query(
        `select pg_size_pretty(pg_total_relation_size('audit_events')) as s, pg_size_pretty(pg_total_relation_size('keel_events')) as e`,
      )
    ).rows[0];
    return {
      postgres: `${process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded (.keel-bench/read)'}, database ${new URL(databaseUrl).pathname.slice(1)}${keep ? ' (kept)' : ''}`,
      dataset: {
        events: totalEvents,
        bigTenantEvents: bigEvents,
        tenants: 10,
        payloadBytes,
        load: { seconds: round(loadSecs), eventsPerSec: Math.round(totalEvents / loadSecs) },
        sizes: { keel_events: tableSize.e, audit_events: tableSize.s },
      },
      rebuild: {
        events: rebuild.totalEvents,
        seconds: round(rebuild.durationMs / 1000),
        eventsPerSec: rebuild.eventsPerSecond,
        // indexing → swapping: the deferred index builds; the replay is everything before.
        replaySeconds: phaseSeconds('replaying', 'indexing'),
        indexSeconds: phaseSeconds('indexing', 'swapping'),
        baselineInsertSelect: baseline,
        ratio: round(rebuild.eventsPerSecond / baseline.rowsPerSec),
        loadAverage1m: rebuildLoad,
      },
      queries,
      export: exported,
      verify: {
        rows: verified.checked,
        seconds: round(verifySecs),
        rowsPerSec: Math.round(verified.checked / verifySecs),
      },
      targets: {
        rebuildEventsPerSec: {
          target: 50_000,
          measured: rebuild.eventsPerSecond,
          met: rebuild.eventsPerSecond >= 50_000,
        },
        queryP95Ms: { target: 50, measured: queries.overall.p95Ms, met: queries.overall.p95Ms <= 50 },
        exportRowsPerSec: {
          target: 100_000,
          measured: exported.export.rowsPerSec,
          met: exported.export.rowsPerSec >= 100_000,
        },
      },
      totalSeconds: round((Date.now() - t0) / 1000),
    };
  } finally {
    await runCleanups(cleanups);
  }
}

const round = (n: number) => Math.round(n * 100) / 100;
const rate = (n: number, since: number) =>
  Math.round((n * 1000) / Math.max(1, Date.now() - since)).toLocaleString('en-US');

async function issueAuditorKey(runtime: KeelRuntime, tenantId: string): Promise<string> {
  const actor = { kind: 'system' as const, id: 'bench' };
  const created = await runtime.store.appendToStream(streamName('tenant', tenantId, 'main'), [
    { type: 'TenantCreated', tenantId, actor, data: { name: 'big' } },
  ]);
  const k = newApiKey();
  const issued = await runtime.store.appendToStream(streamName('access', tenantId, 'main'), [
    {
      type: 'ApiKeyIssued',
      tenantId,
      actor,
      data: { keyId: k.keyId, name: 'bench', role: 'auditor', secretHash: await hashSecret(k.secret) },
    },
  ]);
  await applyAuthEventsInTransaction(runtime.pool, [...created.events, ...issued.events]);
  return k.apiKey;
}

/** Records (one stream each) with a sprinkle of access and run events, so type filters have rare and common types. */
function generate(tenantId: string, from: number, n: number, payloadBytes: number): StreamAppend[] {
  const appends: StreamAppend[] = [];
  const filler = 'x'.repeat(Math.max(0, payloadBytes - 60));
  const access: NewEvent[] = [];
  for (let i = from; i < from + n; i++) {
    const actor = { kind: 'apiKey' as const, id: `k${i % 20}` };
    const correlationId = `c-${Math.floor(i / 10)}`;
    if (i % 100 === 7) {
      access.push({
        type: 'RoleGranted',
        tenantId,
        actor,
        correlationId,
        data: { userId: `u${i % 500}`, role: 'viewer' },
      });
      continue;
    }
    if (i % 50 === 3) {
      appends.push({
        streamId: streamName('run', tenantId, `r${i}`),
        events: [
          {
            type: 'StepFailed',
            tenantId,
            actor: { kind: 'connector', id: 'c1' },
            correlationId,
            data: { runId: `r${i}`, stepIndex: 0, attempt: 1, error: 'HTTP 503' },
          },
        ],
      });
      continue;
    }
    const payload = { n: i, name: `customer ${i}`, email: `enc:${i}`, note: filler };
    appends.push({
      streamId: streamName('record', tenantId, `customer-${i % 200_000}`),
      events: [
        {
          type: 'RecordIngested',
          tenantId,
          actor,
          correlationId,
          data: {
            source: 'crm',
            entityType: 'customer',
            externalId: String(i % 200_000),
            payload,
            receivedVia: 'api',
            contentHash: canonicalHash(payload),
          },
        },
      ],
    });
  }
  if (access.length) appends.push({ streamId: streamName('access', tenantId, 'main'), events: access });
  // appendBatch wants one entry per stream.
  const byStream = new Map<string, StreamAppend>();
  for (const a of appends) {
    const prev = byStream.get(a.streamId);
    if (prev) prev.events.push(...a.events);
    else byStream.set(a.streamId, { ...a, events: [...a.events] });
  }
  return [...byStream.values()];
}

async function insertSelectBaseline(
  pool: pg.Pool,
): Promise<{ rows: number; seconds: number; insertSeconds: number; rowsPerSec: number; note: string }> {
  await pool.query('drop table if exists audit_baseline');
  await pool.query('create table audit_baseline (like audit_events including defaults)');
  // One session, with the index-build memory the rebuild gives itself (and the server's default
  // parallel workers per build).
  const client = await pool.connect();
  try {
    await client.query(`set maintenance_work_mem = '${rebuildIndexMemoryMB()}MB'`);
    return await baselineOn(client);
  } finally {
    await client.query('reset maintenance_work_mem').catch(() => undefined);
    client.release();
  }
}

async function baselineOn(
  pool: pg.PoolClient,
): Promise<{ rows: number; seconds: number; insertSeconds: number; rowsPerSec: number; note: string }> {
  const t = Date.now();
  const r = await pool.query(`
    insert into audit_baseline (tenant_id, global_position, chain_seq, stream_id, stream_position, event_id, type, schema_version,
      actor_kind, actor_id, subject, occurred_at, recorded_at, correlation_id, causation_id, payload, hash)
    select tenant_id, global_position, row_number() over (partition by tenant_id order by global_position), stream_id, stream_position,
      event_id::text, type, schema_version, actor_kind, actor_id, null, occurred_at, recorded_at, correlation_id, causation_id,
      data::json, sha256(convert_to(data, 'UTF8'))
    from keel_events`);
  const insertSeconds = (Date.now() - t) / 1000;
  await pool.query('alter table audit_baseline add primary key (tenant_id, global_position)');
  for (const [name, cols] of [
    ['type', '(tenant_id, type, global_position)'],
    ['actor', '(tenant_id, actor_id, global_position)'],
    ['stream', '(tenant_id, stream_id, global_position)'],
    ['correlation', '(tenant_id, correlation_id, global_position) where correlation_id is not null'],
    ['recorded', '(tenant_id, recorded_at, global_position)'],
  ]) {
    await pool.query(`create index audit_baseline_${name} on audit_baseline ${cols}`);
  }
  const seconds = (Date.now() - t) / 1000;
  const rows = r.rowCount ?? 0;
  await pool.query('drop table audit_baseline');
  return {
    rows,
    seconds: round(seconds),
    insertSeconds: round(insertSeconds),
    rowsPerSec: Math.round(rows / seconds),
    note: 'INSERT ... SELECT from keel_events into an audit_events-shaped table (sha256 of the data, no chain), then the same key and 5 indexes (maintenance_work_mem as in the rebuild)',
  };
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
}

function stats(ms: number[]) {
  const s = [...ms].sort((a, b) => a - b);
  return {
    count: s.length,
    p50Ms: percentile(s, 50),
    p95Ms: percentile(s, 95),
    p99Ms: percentile(s, 99),
    maxMs: round(s.at(-1) ?? 0),
  };
}

async function queryBench(
  pool: pg.Pool,
  app: Awaited<ReturnType<typeof createBaseApp>>,
  tenant: string,
  key: string,
  perKind: number,
) {
  // Filter values that exist, chosen from the data.
  const mid = await pool.query(
    `select global_position, recorded_at, stream_id, correlation_id from audit_events where tenant_id = $1
      order by global_position offset (select count(*) / 2 from audit_events where tenant_id = $1) limit 1`,
    [tenant],
  );
  const m = mid.rows[0];
  const window = await pool.query(
    `select min(recorded_at) as lo, max(recorded_at) as hi from audit_events where tenant_id = $1 and global_position between $2 and $2 + 20000`,
    [tenant, m.global_position],
  );
  const lo = (window.rows[0].lo as Date).toISOString();
  const hi = new Date((window.rows[0].hi as Date).getTime() + 1).toISOString();
  const kinds: Record<string, string> = {
    'no filter (newest page)': '',
    'type=RecordIngested (common)': 'type=RecordIngested',
    'type=RoleGranted (1%)': 'type=RoleGranted',
    'type=StepFailed,RoleGranted (list)': 'type=StepFailed,RoleGranted',
    'actor=apiKey:k7': 'actor=apiKey:k7',
    'streamId (one record stream)': `streamId=${encodeURIComponent(m.stream_id)}`,
    correlationId: `correlationId=${m.correlation_id}`,
    'from/to (a window mid-history)': `from=${lo}&to=${hi}`,
    'deep page: cursor mid-history + type': 'type=RecordIngested&__deep',
  };
  const results: Record<string, unknown> = {};
  const all: number[] = [];
  const allBaseline: number[] = [];
  const explains: Record<string, string[]> = {};
  for (const [name, q] of Object.entries(kinds)) {
    let qs = q;
    if (q.endsWith('&__deep')) {
      // A cursor from the middle of the history, made by paging there through the API once.
      const first = await app.inject({
        method: 'GET',
        url: `/v1/tenants/${tenant}/audit?limit=1&type=RecordIngested`,
        headers: { authorization: `Bearer ${key}` },
      });
      const fp = JSON.parse(Buffer.from(first.json().nextCursor, 'base64url').toString()).f as string;
      qs = `type=RecordIngested&cursor=${Buffer.from(JSON.stringify({ k: [Number(m.global_position)], f: fp })).toString('base64url')}`;
    }
    const url = `/v1/tenants/${tenant}/audit?limit=100${qs ? `&${qs}` : ''}`;
    const ms: number[] = [];
    for (let i = 0; i < perKind + 10; i++) {
      const t = process.hrtime.bigint();
      const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } });
      const took = Number(process.hrtime.bigint() - t) / 1e6;
      if (res.statusCode !== 200) throw new Error(`${name}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      if (i >= 10) ms.push(took); // the first ones warm caches (and the auth cache)
    }
    // Baseline: the same query text, bare on the pool (no HTTP, auth, RLS transaction, serialization).
    const { sql, params } = sqlFor(tenant, qs);
    const base: number[] = [];
    for (let i = 0; i < perKind + 10; i++) {
      const t = process.hrtime.bigint();
      await pool.query(sql, params);
      if (i >= 10) base.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const plan = await pool.query(`explain (analyze, buffers, costs off) ${sql}`, params);
    explains[name] = plan.rows.map((r: Record<string, string>) => r['QUERY PLAN']!);
    all.push(...ms);
    allBaseline.push(...base);
    const s = stats(ms);
    const b = stats(base);
    results[name] = { ...s, baselineP95Ms: b.p95Ms, ratio: round(s.p95Ms / Math.max(0.01, b.p95Ms)) };
  }
  const overall = stats(all);
  const baseline = stats(allBaseline);
  return {
    pageSize: 100,
    perKind,
    overall: {
      ...overall,
      baselineP95Ms: baseline.p95Ms,
      ratio: round(overall.p95Ms / Math.max(0.01, baseline.p95Ms)),
    },
    byKind: results,
    explain: explains,
  };
}

/** The exact SQL the route runs for a query string (projection-service parses and builds it), for the bare baseline and EXPLAIN. */
function sqlFor(tenant: string, qs: string): { sql: string; params: unknown[] } {
  const query = Object.fromEntries(new URLSearchParams(qs));
  const q = parseAuditPage({ ...query, limit: '100' }, { tenantId: tenant, isKnownType: () => true });
  const { text, params } = auditPageSql(tenant, q.filters, q.limit, q.before);
  return { sql: text, params };
}

/** The export's HTTP client: counts the lines as they stream by and prints {rows, bytes}. */
const EXPORT_CLIENT = `
import { request } from 'node:http';
const req = request(process.env.EXPORT_URL, { headers: { authorization: 'Bearer ' + process.env.EXPORT_KEY } }, (res) => {
  if (res.statusCode !== 200) { console.error('export answered ' + res.statusCode); process.exit(1); }
  let rows = 0, bytes = 0;
  res.on('data', (chunk) => {
    bytes += chunk.length;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
  });
  res.on('end', () => process.stdout.write(JSON.stringify({ rows, bytes })));
  res.on('error', (e) => { console.error(e.message); process.exit(1); });
});
req.on('error', (e) => { console.error(e.message); process.exit(1); });
req.end();
`;

async function exportBench(app: Awaited<ReturnType<typeof createBaseApp>>, pool: pg.Pool, tenant: string, key: string) {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  global.gc?.();
  const rssBefore = process.memoryUsage.rss();
  let peak = rssBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 50);
  const t = Date.now();
  // The client is a process of its own, as a real one (curl, a script) would be: reading 5 GB off
  // a socket is not the server's work, and on one event loop it would slow the server down.
  const { rows, bytes } = await new Promise<{ rows: number; bytes: number }>((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', EXPORT_CLIENT], {
      env: {
        ...process.env,
        EXPORT_URL: `http://127.0.0.1:${port}/v1/tenants/${tenant}/audit/export?format=ndjson`,
        EXPORT_KEY: key,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`export client exited with ${code}`));
      try {
        resolvePromise(JSON.parse(out) as { rows: number; bytes: number });
      } catch (e) {
        reject(e as Error);
      }
    });
  });
  const seconds = (Date.now() - t) / 1000;
  clearInterval(sampler);

  // Baseline: the same rows, same keyset chunks, no formatting and no HTTP.
  const tb = Date.now();
  let baseRows = 0;
  let before: number | null = null;
  for (;;) {
    const r: pg.QueryResult = await pool.query(
      `select tenant_id, global_position, chain_seq, stream_id, stream_position, event_id, type, schema_version, actor_kind, actor_id, subject,
        occurred_at, recorded_at, correlation_id, causation_id, payload::text as payload, hash from audit_events
        where tenant_id = $1 ${before === null ? '' : 'and global_position < $3'} order by global_position desc limit $2`,
      before === null ? [tenant, 5001] : [tenant, 5001, before],
    );
    const page = r.rows.slice(0, 5000);
    baseRows += page.length;
    if (r.rows.length <= 5000) break;
    before = Number(page.at(-1).global_position);
  }
  const baseSeconds = (Date.now() - tb) / 1000;
  const mib = (n: number) => round(n / 2 ** 20);
  return {
    export: {
      rows,
      MiB: mib(bytes),
      seconds: round(seconds),
      rowsPerSec: Math.round(rows / seconds),
      rssBeforeMiB: mib(rssBefore),
      peakRssMiB: mib(peak),
      peakRssGrowthMiB: mib(peak - rssBefore),
      note: 'client in a child process (counts lines, keeps nothing); RSS of the server process, sampled every 50 ms while streaming',
    },
    baselineRawKeysetSelect: {
      rows: baseRows,
      seconds: round(baseSeconds),
      rowsPerSec: Math.round(baseRows / baseSeconds),
    },
    ratio: round(rows / seconds / (baseRows / baseSeconds)),
  };
}
