/**
 * `npm run bench -- runners [--events 30000] [--rate 2000] [--seconds 10] [--payload-bytes 300] [--concurrency 64]`
 *
 * Webhook delivery through the whole runner pipeline, on the PostgreSQL bus (the embedded profile):
 * append → bus (store log) → runner intake (delivery rows) → signed POST to a local endpoint that
 * answers at once → outcome event appended + row updated.
 *
 * 1. Baseline, same run, same endpoint: the bare HTTP client (undici `request` over a keep-alive
 *    pool of --concurrency connections) POSTing the same body with the same headers, --events times.
 * 2. Throughput: --events RecordIngested events are appended up front, then the runners start;
 *    deliveries/s = events / time until the endpoint received them all, and until every outcome
 *    was recorded (WebhookDeliverySucceeded appended, row updated). Ratio to the baseline.
 * 3. Latency from append: appends paced at --rate events/s for --seconds with the runners live;
 *    per delivery, endpoint receipt time − the event's recordedAt; p50/p99/max after 1 s warm-up.
 *
 * The endpoint runs in a child process (its own event loop, like a real receiver). PostgreSQL:
 * DATABASE_URL if set (a fresh database is created and dropped), else an embedded server in
 * .keel-bench/runners on KEEL_BENCH_PG_PORT (default 54341). KEEL_RUNNER_HTTP_THREAD=off|on picks
 * where outbound HTTP runs (default: a thread of its own on a multi-core machine);
 * KEEL_BENCH_CPU_PROF=1 writes a CPU profile of the throughput phase.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import {
  authMigrations,
  busMigrations,
  canonicalHash,
  createKeyring,
  createPostgresBus,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  loadBaseConfig,
  masterKeyId,
  runMigrations,
  storeMigrations,
  uuidv7,
  type EventStore,
  type KeelRuntime,
  type NewEvent,
} from '@keel/shared-events';
import {
  connectorRunnerMigrations,
  loadRunnerConfig,
  runnerMetrics,
  signatureHeader,
  startRunners,
} from '@keel/connector-runners';
import { benchDatabase, profiled, numberOption, percentile, runCleanups, type Cleanup } from './support.ts';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });

const ENDPOINT = `
import { createServer } from 'node:http';
let count = 0;
let measuring = false;
let lat = [];
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    count++;
    if (measuring) {
      const body = Buffer.concat(chunks).toString();
      const i = body.indexOf('"recordedAt":"');
      if (i >= 0) lat.push(Date.now() - Date.parse(body.slice(i + 14, i + 38)));
    }
    res.writeHead(200, { 'content-length': '0' });
    res.end();
  });
});
server.keepAliveTimeout = 120000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m === 'count') process.send({ count });
  else if (m === 'measure') { measuring = true; lat = []; }
  else if (m === 'latencies') process.send({ lat });
  else if (m === 'stop') server.close(() => process.exit(0));
});
`;

interface Endpoint {
  url: string;
  ask<T>(message: string): Promise<T>;
  tell(message: string): void;
  stop(): Promise<void>;
}

async function startEndpoint(): Promise<Endpoint> {
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', ENDPOINT], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((res, rej) => {
    child.once('message', (m) => res((m as { port: number }).port));
    child.once('exit', (code) => rej(new Error(`endpoint exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    ask: <T>(message: string) =>
      new Promise<T>((res) => {
        child.once('message', (m) => res(m as T));
        child.send(message);
      }),
    tell: (message) => void child.send(message),
    stop: () =>
      new Promise<void>((res) => {
        child.once('exit', () => res());
        child.send('stop');
      }),
  };
}

export default async function runnersBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => numberOption(args, name, dflt);
  const events = opt('events', 30_000);
  const rate = opt('rate', 2_000);
  const seconds = opt('seconds', 10);
  const payloadBytes = opt('payload-bytes', 300);
  const concurrency = opt('concurrency', 64);

  const cleanups: Cleanup[] = [];
  try {
    const { url: databaseUrl } = await benchDatabase('runners', cleanups, {
      dataDir: '.keel-bench/runners',
      port: 54341,
    });
    await runMigrations(databaseUrl, [storeMigrations, busMigrations, authMigrations, ...connectorRunnerMigrations]);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
    pool.on('error', () => undefined);
    cleanups.push(() => pool.end());
    const registry = createSchemaRegistry();
    const store = getPostgreSQLEventStore({ connectionString: databaseUrl, registry, poolSize: 10 });
    cleanups.push(() => store.close());
    const endpoint = await startEndpoint();
    cleanups.push(() => endpoint.stop());

    const master = randomBytes(32);
    const keyring = createKeyring({
      pool,
      masterKey: { key: master, id: masterKeyId(master), source: 'bench', generated: true },
    });
    const tenantId = `bench${randomBytes(3).toString('hex')}`;
    const actor = { kind: 'system' as const, id: 'bench' };
    const secret = `whsec_${randomBytes(16).toString('hex')}`;
    const webhookId = uuidv7();
    await store.appendToStream(`tenant-${tenantId}-${tenantId}`, [
      { type: 'TenantCreated', tenantId, actor, data: { name: tenantId } },
    ]);
    await store.appendToStream(`webhook-${tenantId}-${webhookId}`, [
      {
        type: 'WebhookEndpointRegistered',
        tenantId,
        actor,
        data: {
          webhookId,
          url: endpoint.url,
          eventTypes: ['RecordIngested'],
          secret: await keyring.encryptField(tenantId, secret),
        },
      },
    ]);
    const runtime: KeelRuntime = {
      config: loadBaseConfig({ KEEL_PROFILE: 'postgres', DATABASE_URL: databaseUrl }),
      databaseUrl,
      pool,
      store,
      registry,
      logger,
      onClose: () => undefined,
    };
    const config = {
      ...loadRunnerConfig({
        KEEL_RUNNER_PER_DESTINATION: String(concurrency),
        KEEL_RUNNER_MAX_IN_FLIGHT: '5000',
        KEEL_RUNNER_POLL_MS: '50',
        KEEL_RUNNER_HTTP_THREAD: process.env.KEEL_RUNNER_HTTP_THREAD, // to compare: off / on
        KEEL_RUNNER_PRIVATE_NETWORKS: 'allow', // the endpoint is on this machine
      }),
    };
    const payload = { blob: 'x'.repeat(Math.max(0, payloadBytes - 20)) };
    const record = (i: number): NewEvent => ({
      type: 'RecordIngested',
      tenantId,
      actor,
      correlationId: `c-${i}`,
      data: {
        source: 'bench',
        entityType: 'item',
        externalId: String(i),
        payload,
        receivedVia: 'api',
        contentHash: canonicalHash(payload),
      },
    });

    // ---- 1. baseline: the bare client, same requests
    const sampleBody = JSON.stringify({
      eventId: uuidv7(),
      type: 'RecordIngested',
      schemaVersion: 2,
      tenantId,
      streamId: `record-${tenantId}-item-0`,
      streamPosition: 0,
      globalPosition: 1,
      occurredAt: new Date().toISOString(),
      recordedAt: new Date().toISOString(),
      actor,
      correlationId: 'c-0',
      data: record(0).data,
    });
    const baseline = await bareClient(endpoint.url, sampleBody, secret, events, concurrency);
    const countBefore = (await endpoint.ask<{ count: number }>('count')).count;

    // ---- 2. throughput: backlog of `events`, then the runners
    await appendRecords(store, events, 0, record);
    const bus = createPostgresBus({ store, pool, logger, pollIntervalMs: 10 });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const runners = await startRunners(runtime, bus, {
      config,
      openSecret: (t, v) => keyring.decryptField(t, v),
      runners: ['webhooks'],
    });
    const { receivedMs, recordedMs } = await profiled('runners-throughput', async () => {
      let receivedMs = 0;
      for (;;) {
        const { count } = await endpoint.ask<{ count: number }>('count');
        if (count - countBefore >= events) {
          receivedMs = performance.now() - t0;
          break;
        }
        await sleep(20);
      }
      let recordedMs = 0;
      for (;;) {
        const r = await pool.query<{ n: string }>(
          `select count(*) as n from keel_runner_deliveries where state = 'succeeded'`,
        );
        if (Number(r.rows[0]!.n) >= events) {
          recordedMs = performance.now() - t0;
          break;
        }
        await sleep(20);
      }
      return { receivedMs, recordedMs };
    });
    const cpu = process.cpuUsage(cpu0);
    const runnerCpuMs = (cpu.user + cpu.system) / 1000;
    const outcomeEvents = await pool
      .query<{ n: string }>(`select count(*) as n from keel_events where type = 'WebhookDeliverySucceeded'`)
      .catch(() => ({ rows: [{ n: 'n/a' }] }));

    // ---- 3. latency from append at a paced rate, runners live
    endpoint.tell('measure');
    const paced = await paceAppends(store, rate, seconds, events, record);
    const target = events + paced.appended;
    for (;;) {
      const { count } = await endpoint.ask<{ count: number }>('count');
      if (count - countBefore >= target) break;
      await sleep(20);
    }
    const { lat } = await endpoint.ask<{ lat: number[] }>('latencies');
    await runners.stop();
    await bus.close();
    const warm = lat.slice(Math.min(lat.length, Math.round(rate)));
    const sorted = [...warm].sort((a, b) => a - b);
    const pct = (p: number) => percentile(sorted, p / 100) ?? 0;

    const deferred = Object.fromEntries(
      ((await runnerMetrics().deferred.get()).values ?? []).map((v) => [String(v.labels.reason), v.value]),
    );
    const received = round((events / receivedMs) * 1000);
    const recorded = round((events / recordedMs) * 1000);
    return {
      postgres: process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded (.keel-bench/runners)',
      bus: 'postgres (store log)',
      setup: {
        events,
        payloadBytes,
        concurrencyPerDestination: concurrency,
        httpThread: config.httpThread,
        endpoint: 'child process, answers 200 at once',
      },
      baseline: { client: `undici request, ${concurrency} connections`, requests: events, requestsPerSec: baseline },
      throughput: {
        deliveriesPerSecReceived: received,
        deliveriesPerSecRecorded: recorded,
        ratioToBareClient: round(recorded / baseline, 3),
        outcomeEventsRecorded: outcomeEvents.rows[0]!.n,
        deferredWithoutAttempt: deferred,
        runnerProcessCpu: {
          msPerDelivery: round(runnerCpuMs / events, 3),
          busyShareOfOneCore: round(runnerCpuMs / recordedMs, 2),
          kernelShare: round(cpu.system / (cpu.user + cpu.system), 2),
        },
        elapsedMs: { received: round(receivedMs), recorded: round(recordedMs) },
      },
      latencyFromAppend: {
        paced: `${rate} events/s for ${seconds} s (${paced.appended} appended, achieved ${paced.achievedRate}/s)`,
        samples: sorted.length,
        p50Ms: pct(50),
        p90Ms: pct(90),
        p99Ms: pct(99),
        maxMs: sorted.at(-1) ?? 0,
      },
      targets: { deliveriesPerSec: { target: 5_000, measured: recorded, met: recorded >= 5_000 } },
    };
  } finally {
    await runCleanups(cleanups);
  }
}

async function bareClient(url: string, body: string, secret: string, n: number, concurrency: number): Promise<number> {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 60_000 });
  let next = 0;
  const one = async () => {
    for (let i = next++; i < n; i = next++) {
      const res = await request(url, {
        dispatcher: agent,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Keel-Webhooks/1',
          'keel-event-id': `e-${i}`,
          'keel-event-type': 'RecordIngested',
          'idempotency-key': `k-${i}`,
          'keel-signature': signatureHeader(secret, body),
        },
        body,
      });
      await res.body.dump();
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, one));
  const rate = round((n / (performance.now() - t0)) * 1000);
  await agent.close();
  return rate;
}

async function appendRecords(
  store: EventStore,
  n: number,
  from: number,
  record: (i: number) => NewEvent,
): Promise<void> {
  for (let i = from; i < from + n; i += 1000) {
    const end = Math.min(from + n, i + 1000);
    await store.appendBatch(
      Array.from({ length: end - i }, (_, k) => ({
        streamId: `record-${record(i + k).tenantId}-item-${i + k}`,
        events: [record(i + k)],
      })),
    );
  }
}

async function paceAppends(
  store: EventStore,
  rate: number,
  seconds: number,
  from: number,
  record: (i: number) => NewEvent,
): Promise<{ appended: number; achievedRate: number }> {
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((rate * tickMs) / 1000));
  const t0 = performance.now();
  let appended = 0;
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    if (appended < due) {
      const n = Math.min(due - appended, perTick * 10);
      await appendRecords(store, n, from + appended, record);
      appended += n;
    } else await sleep(Math.max(1, tickMs / 2));
  }
  return { appended, achievedRate: round((appended / (performance.now() - t0)) * 1000) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits;
