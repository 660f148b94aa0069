/**
 * `npm run bench -- store [--events 500000] [--batch 1000] [--streams 10000] [--payload-bytes 1024]
 *                         [--concurrency 2] [--rate 200] [--seconds 10] [--read-batch 1000]`
 *
 * The PostgreSQL event store, against same-run baselines on the same database:
 * 1. single-event appends (one RecordIngested per appendToStream): closed-loop appends/s at
 *    concurrency 1 and 8, against a raw one-row INSERT of the same row into a table with the same
 *    indexes; then latency p50/p99 at a paced --rate appends/s (open loop) for --seconds.
 * 2. batched multi-stream appends: --events events in appendBatch calls of --batch events over
 *    --streams streams (1 KB payloads, schema-validated), --concurrency calls in flight. Baseline:
 *    plain `INSERT ... SELECT` of the very same rows (copied from the store's table into a staging
 *    table) into a table with the same columns and indexes, in chunks of the same size (each
 *    chunk its own transaction, as each append is) from one session: the ratio is against this.
 *    The same with --concurrency sessions, and one INSERT ... SELECT of everything, are reported
 *    too.
 * 3. readAll: the whole log in pages of --read-batch, as RecordedEvents (payload JSON parsed).
 *    Baseline: the same pages through node-pg's plain `SELECT *` with its default row parsing.
 *
 * PostgreSQL: DATABASE_URL if set (a fresh database is created and dropped), else an embedded
 * server in .keel-bench/pg on port KEEL_BENCH_PG_PORT (54340), stopped at the end.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import pg from 'pg';
import {
  canonicalHash,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  runMigrations,
  startEmbeddedPostgres,
  storeMigrations,
  streamName,
  type EventStore,
  type NewEvent,
  type StreamAppend,
} from '@keel/shared-events';

type Cleanup = () => Promise<void>;

export default async function storeBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => {
    const i = args.indexOf(`--${name}`);
    const v = i >= 0 ? Number(args[i + 1]) : dflt;
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
    return v;
  };
  const totalEvents = opt('events', 500_000);
  const batchSize = opt('batch', 1_000);
  const streams = opt('streams', 10_000);
  const payloadBytes = opt('payload-bytes', 1_024);
  const concurrency = opt('concurrency', 2);
  const rate = opt('rate', 200);
  const seconds = opt('seconds', 10);
  const readBatch = opt('read-batch', 1_000);
  const calls = Math.ceil(totalEvents / batchSize);

  const cleanups: Cleanup[] = [];
  // Other work on the machine moves every figure: the 1-minute load average is part of the result.
  const loadAtStart = loadavg()[0]!;
  try {
    const { url, server } = await database(cleanups);
    await runMigrations(url, [storeMigrations]);
    const admin = new pg.Pool({ connectionString: url, max: concurrency + 2 });
    cleanups.push(() => admin.end());
    const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry(), poolSize: Math.max(10, concurrency + 2) });
    cleanups.push(() => store.close());
    const info = await admin.query<{ version: string; sc: string; sb: string }>(
      `select current_setting('server_version') as version, current_setting('synchronous_commit') as sc, current_setting('shared_buffers') as sb`,
    );
    const tenantId = randomUUID();
    const events = eventFactory(tenantId, payloadBytes);
    // Same columns and indexes as keel_events; only the table name differs.
    await admin.query('create table bench_baseline (like keel_events including all)');
    await admin.query('create table bench_baseline_single (like keel_events including all)');

    log(`PostgreSQL ${info.rows[0]!.version} (${server}); ${totalEvents} events, ${calls} calls of ${batchSize}, ${streams} streams`);

    // ---------------------------------------------------------------------------- 1. single
    await warmUp(store, events, streams);
    await admin.query('checkpoint');
    const single1 = await closedLoop(5, 1, (i) => store.appendToStream(events.stream(i % streams), [events.make(i)]).then(() => undefined));
    const single8 = await closedLoop(5, 8, (i) => store.appendToStream(events.stream(i % streams), [events.make(i)]).then(() => undefined));
    const row = await admin.query('select * from keel_events order by global_position desc limit 1');
    const r = row.rows[0] as Record<string, unknown>;
    let basePos = 1e12;
    // The raw baseline: the same row as a plain one-row INSERT (its own transaction).
    const rawInsert = () =>
      admin
        .query(
          `insert into bench_baseline_single (global_position, stream_position, event_id, occurred_at, schema_version, tenant_id,
             stream_id, type, actor_kind, actor_id, data) values ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [basePos++, randomUUID(), r.occurred_at, r.schema_version, r.tenant_id, `${String(r.stream_id)}-${basePos}`, r.type, r.actor_kind, r.actor_id, r.data],
        )
        .then(() => undefined);
    const rawSingle = await closedLoop(5, 1, rawInsert);
    log(`single appends: ${single1.perSec}/s (1 in flight), ${single8.perSec}/s (8 in flight); raw INSERT ${rawSingle.perSec}/s`);
    const paced = await pacedAppends(rate, seconds, (i) => store.appendToStream(events.stream(i % streams), [events.make(i)]));
    log(`paced ${rate}/s: p50 ${paced.p50Ms} ms, p99 ${paced.p99Ms} ms, max ${paced.maxMs} ms`);
    const pacedRaw = await pacedAppends(rate, seconds, rawInsert);
    log(`paced ${rate}/s raw INSERT: p50 ${pacedRaw.p50Ms} ms, p99 ${pacedRaw.p99Ms} ms, max ${pacedRaw.maxMs} ms`);

    // --------------------------------------------------------------------------- 2. batched
    const head = await store.headPosition();
    await admin.query('checkpoint');
    const batched = await timed(async () => {
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          for (let c = next++; c < calls; c = next++) {
            const appends: StreamAppend[] = [];
            const n = Math.min(batchSize, totalEvents - c * batchSize);
            for (let k = 0; k < n; k++) {
              const i = c * batchSize + k;
              appends.push({ streamId: events.stream(i % streams), events: [events.make(i)] });
            }
            const res = await store.appendBatch(appends);
            if (res.appended !== n) throw new Error(`call ${c} stored ${res.appended} of ${n}`);
          }
        }),
      );
    });
    const batchedPerSec = Math.round(totalEvents / batched.seconds);
    log(`batched appends: ${batchedPerSec} events/s`);

    // The very same rows, staged, then inserted raw with the same chunking and concurrency.
    const columns = (
      await admin.query<{ c: string }>(
        "select string_agg(quote_ident(column_name), ', ' order by ordinal_position) as c from information_schema.columns where table_name = 'keel_events'",
      )
    ).rows[0]!.c;
    // rn numbers the rows for chunking, whatever gaps the positions have.
    await admin.query(
      `create table bench_staging as select ${columns}, row_number() over (order by global_position) as rn from keel_events where global_position > $1`,
      [head],
    );
    await admin.query('create index on bench_staging (rn)');
    await admin.query('vacuum analyze bench_staging');
    const staged = Number((await admin.query<{ n: string }>('select count(*) as n from bench_staging')).rows[0]!.n);
    if (staged !== totalEvents) throw new Error(`staged ${staged} rows, expected ${totalEvents}`);
    const chunkedInsert = (sessions: number) =>
      timed(async () => {
        let next = 0;
        await Promise.all(
          Array.from({ length: sessions }, async () => {
            for (let c = next++; c < calls; c = next++) {
              await admin.query(`insert into bench_baseline select ${columns} from bench_staging where rn > $1 and rn <= $2`, [
                c * batchSize,
                (c + 1) * batchSize,
              ]);
            }
          }),
        );
      });
    await admin.query('checkpoint');
    const baseline = await chunkedInsert(1);
    const baselinePerSec = Math.round(totalEvents / baseline.seconds);
    await admin.query('truncate bench_baseline');
    await admin.query('checkpoint');
    const baselineC = await chunkedInsert(concurrency);
    const baselineCPerSec = Math.round(totalEvents / baselineC.seconds);
    await admin.query('truncate bench_baseline');
    await admin.query('checkpoint');
    const oneStatement = await timed(() => admin.query(`insert into bench_baseline select ${columns} from bench_staging`).then(() => undefined));
    const oneStatementPerSec = Math.round(totalEvents / oneStatement.seconds);
    log(
      `baseline INSERT ... SELECT: ${baselinePerSec} events/s chunked (1 session), ${baselineCPerSec} (${concurrency} sessions), ` +
        `${oneStatementPerSec} as one statement`,
    );

    // ------------------------------------------------------------------------------ 3. read
    await admin.query('vacuum analyze keel_events');
    const readEnd = await store.headPosition();
    const read = await timed(async () => {
      let after = 0;
      for (;;) {
        const page = await store.readAll({ after, maxCount: readBatch });
        after = page.position;
        if (page.isEnd) break;
      }
      if (after !== readEnd) throw new Error(`readAll stopped at ${after}, head is ${readEnd}`);
    });
    const readCount = Number((await admin.query<{ n: string }>('select count(*) as n from keel_events')).rows[0]!.n);
    const readPerSec = Math.round(readCount / read.seconds);
    const rawRead = await timed(async () => {
      let after = 0;
      for (;;) {
        const res = await admin.query('select * from keel_events where global_position > $1 order by global_position limit $2', [after, readBatch]);
        if (res.rows.length === 0) break;
        after = Number(res.rows[res.rows.length - 1].global_position);
      }
    });
    const rawReadPerSec = Math.round(readCount / rawRead.seconds);
    log(`readAll: ${readPerSec} events/s; plain SELECT * pages: ${rawReadPerSec} events/s`);

    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    return {
      postgres: { server, version: info.rows[0]!.version, synchronousCommit: info.rows[0]!.sc, sharedBuffers: info.rows[0]!.sb },
      machineLoad1m: { atStart: Math.round(loadAtStart * 100) / 100, atEnd: Math.round(loadavg()[0]! * 100) / 100 },
      workload: { events: totalEvents, batchSize, streams, payloadBytes, concurrency, schemaValidated: true },
      singleAppend: {
        appendsPerSec: { inFlight1: single1.perSec, inFlight8: single8.perSec },
        baselineRawInsertPerSec: rawSingle.perSec,
        ratio: ratio(single1.perSec, rawSingle.perSec),
        latencyInFlight1: { p50Ms: single1.p50Ms, p99Ms: single1.p99Ms },
        paced,
        pacedBaselineRawInsert: pacedRaw,
      },
      batchedAppend: {
        eventsPerSec: batchedPerSec,
        mbPerSec: Math.round((batchedPerSec * payloadBytes) / 2 ** 20),
        baselineInsertSelectPerSec: { chunked: baselinePerSec, chunkedSameConcurrency: baselineCPerSec, oneStatement: oneStatementPerSec },
        ratio: ratio(batchedPerSec, baselinePerSec),
        ratioToSameConcurrency: ratio(batchedPerSec, baselineCPerSec),
        ratioToOneStatement: ratio(batchedPerSec, oneStatementPerSec),
      },
      readAll: { events: readCount, pageSize: readBatch, eventsPerSec: readPerSec, baselinePlainSelectPerSec: rawReadPerSec, ratio: ratio(readPerSec, rawReadPerSec) },
      targets: {
        batchedAppendRatio: { target: 0.6, measured: ratio(batchedPerSec, baselinePerSec), met: batchedPerSec / baselinePerSec >= 0.6 },
        readAllEventsPerSec: { target: 200_000, measured: readPerSec, met: readPerSec >= 200_000 },
        singleAppendP99Ms: { target: 10, measured: paced.p99Ms, met: paced.p99Ms <= 10 },
      },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => console.error('[cleanup]', (e as Error).message));
  }
}

// ----------------------------------------------------------------------------------- helpers

function log(msg: string): void {
  console.error(`[bench store] ${msg}`);
}

async function database(cleanups: Cleanup[]): Promise<{ url: string; server: string }> {
  let admin = process.env.DATABASE_URL;
  let server = 'DATABASE_URL';
  if (!admin) {
    const port = Number(process.env.KEEL_BENCH_PG_PORT ?? 54340);
    const pgServer = await startEmbeddedPostgres({ dataDir: resolve('.keel-bench/pg'), port });
    cleanups.push(() => pgServer.stop());
    admin = pgServer.adminUrl;
    server = `embedded (.keel-bench/pg, port ${port})`;
  }
  const name = `keel_bench_store_${randomBytes(4).toString('hex')}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`create database ${name}`);
  await c.end();
  cleanups.push(async () => {
    const d = new pg.Client({ connectionString: admin });
    await d.connect();
    await d.query(`drop database if exists ${name} with (force)`);
    await d.end();
  });
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return { url: u.toString(), server };
}

/**
 * RecordIngested events with ~payloadBytes of payload JSON. A thousand distinct payloads are built
 * up front (with their content hashes) so the timed loops measure the store, not the generator.
 */
function eventFactory(tenantId: string, payloadBytes: number) {
  const payloads = Array.from({ length: 1000 }, (_, p) => {
    const payload: Record<string, unknown> = {
      name: `Customer ${p}`,
      email: `customer${p}@example.com`,
      tags: ['gold', 'newsletter', `segment-${p % 17}`],
      address: { street: `${p} Main Street`, city: 'Springfield', zip: String(10000 + p) },
      notes: '',
    };
    const size = JSON.stringify(payload).length;
    payload.notes = randomBytes(Math.max(0, payloadBytes - size)).toString('base64').slice(0, Math.max(0, payloadBytes - size));
    return { payload, hash: canonicalHash(payload) };
  });
  const actor = { kind: 'apiKey', id: 'key_bench' } as const;
  return {
    stream: (s: number) => streamName('record', tenantId, `customer-${s}`),
    make(i: number): NewEvent {
      const p = payloads[i % payloads.length]!;
      return {
        type: 'RecordIngested',
        tenantId,
        actor,
        data: { source: 'crm', entityType: 'customer', externalId: String(i), payload: p.payload, receivedVia: 'api', contentHash: p.hash },
      };
    },
  };
}

async function warmUp(store: EventStore, events: ReturnType<typeof eventFactory>, streams: number): Promise<void> {
  for (let i = 0; i < 200; i++) await store.appendToStream(events.stream(i % streams), [events.make(i)]);
}

async function timed(f: () => Promise<void>): Promise<{ seconds: number }> {
  const t0 = performance.now();
  await f();
  return { seconds: (performance.now() - t0) / 1000 };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** `inFlight` workers calling `op` back to back for `seconds`. */
async function closedLoop(seconds: number, inFlight: number, op: (i: number) => Promise<void>) {
  const latencies: number[] = [];
  let i = 0;
  const until = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < until) {
        const s = performance.now();
        await op(i++);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { perSec: Math.round(latencies.length / elapsed), p50Ms: round2(percentile(latencies, 50)), p99Ms: round2(percentile(latencies, 99)) };
}

/** Open loop: starts one append every 1/rate s whether or not earlier ones have finished. */
async function pacedAppends(rate: number, seconds: number, op: (i: number) => Promise<unknown>) {
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const s = performance.now();
    inFlight.push(op(1_000_000 + i).then(() => void latencies.push(performance.now() - s)));
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    targetRate: rate,
    achievedRate: Math.round(total / elapsed),
    appends: total,
    p50Ms: round2(percentile(latencies, 50)),
    p99Ms: round2(percentile(latencies, 99)),
    maxMs: round2(latencies[latencies.length - 1] ?? 0),
  };
}
