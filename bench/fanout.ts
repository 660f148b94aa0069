/**
 * `npm run bench -- fanout [--events 200000] [--rate 5000] [--seconds 20] [--payload-bytes 200] [--batch 2000]`
 *
 * 1. Relay throughput: --events events are appended up front (1,000 tenants), then the relay
 *    publishes them to Kafka from position 0 until its checkpoint reaches the head: once as
 *    configured by default (one thread), once with its producer thread. Baseline, in the same run,
 *    on the same broker: a bare kafkajs producer (same settings: idempotent, acks=all, one request
 *    in flight) sending the very same Avro messages, pre-encoded, in the same chunking.
 * 2. End-to-end lag, append → projector applied (its transaction committed), with appends paced at
 *    --rate events/s for --seconds, on Kafka (store → relay → Kafka → consumer group → projector)
 *    and on the PostgreSQL bus (store → log subscription → projector). p50/p99/max over all events
 *    after a 2 s warm-up.
 *
 * KEEL_BENCH_PRODUCER_THREAD=1 runs the lag measurement's relay with its producer thread.
 * PostgreSQL: DATABASE_URL if set (a fresh database is created and dropped), else an embedded
 * server in .keel-bench/fanout. Kafka: KAFKA_BROKERS if set, else a broker started from
 * infra/kafka on its own ports and data dir (.keel-bench/fanout-kafka), stopped at the end.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { ICustomPartitioner, Message } from 'kafkajs';
import pg from 'pg';
import pino from 'pino';
import { Registry } from 'prom-client';
import {
  busMigrations,
  cachingDefaultPartitioner,
  canonicalHash,
  createKafkaBus,
  createKafkaClient,
  createPostgresBus,
  createSchemaRegistry,
  defaultEventCodec,
  ensureTopics,
  getPostgreSQLEventStore,
  projector,
  runMigrations,
  startRelay,
  storeMigrations,
  toKafkaMessage,
  uuidv7,
  type BusHandler,
  type EventBus,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
} from '@keel/shared-events';
import {
  benchDatabase,
  loadAverage1m,
  loadAverage1mSince,
  numberOption,
  percentile,
  runCleanups,
  type Cleanup,
} from './support.ts';

const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });

export default async function fanoutBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => numberOption(args, name, dflt);
  const totalEvents = opt('events', 200_000);
  const rate = opt('rate', 5_000);
  const seconds = opt('seconds', 20);
  const payloadBytes = opt('payload-bytes', 200);
  const batchSize = opt('batch', 2_000);

  const cleanups: Cleanup[] = [];
  const loadBefore = loadAverage1m();
  try {
    const { url: databaseUrl } = await benchDatabase('fanout', cleanups, {
      dataDir: '.keel-bench/fanout',
      port: 54331,
    });
    const brokers = await kafka(cleanups);
    cleanups.push(async () => {
      const admin = createKafkaClient({ brokers, logger, clientId: 'bench-cleanup' }).admin();
      await admin.connect();
      await admin.deleteTopics({ topics: [...new Set(benchTopics)] }).finally(() => admin.disconnect());
    });
    await runMigrations(databaseUrl, [storeMigrations, busMigrations]);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 12 });
    pool.on('error', (err) => logger.warn({ err: err.message }, 'idle PostgreSQL connection lost'));
    cleanups.push(() => pool.end());
    await pool.query(
      'create table bench_applied (tenant_id text not null, event_id text not null, global_position bigint not null)',
    );
    const store = getPostgreSQLEventStore({ connectionString: databaseUrl, registry: createSchemaRegistry() });
    cleanups.push(() => store.close());

    const relayFigures = await relayThroughput({ store, pool, brokers, totalEvents, payloadBytes, batchSize });
    const kafkaLag = await endToEnd('kafka', { store, pool, brokers, rate, seconds, payloadBytes });
    const pgLag = await endToEnd('postgres', { store, pool, brokers, rate, seconds, payloadBytes });
    return {
      // Other processes compete for the 2 cores: the 1-minute load average says how much.
      loadAverage1m: loadAverage1mSince(loadBefore),
      postgres: process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded (.keel-bench/fanout)',
      kafka: process.env.KAFKA_BROKERS
        ? `KAFKA_BROKERS=${process.env.KAFKA_BROKERS}`
        : `broker started for the run at ${brokers.join(',')}`,
      relay: relayFigures,
      endToEndLag: {
        paced: `${rate} events/s for ${seconds} s`,
        kafka: kafkaLag,
        postgresBus: pgLag,
      },
      targets: {
        relayEventsPerSec: {
          target: 50_000,
          measured: Math.max(relayFigures.relay.eventsPerSec, relayFigures.relayWithProducerThread.eventsPerSec),
          met: Math.max(relayFigures.relay.eventsPerSec, relayFigures.relayWithProducerThread.eventsPerSec) >= 50_000,
        },
        kafkaP99Ms: { target: 250, measured: kafkaLag.p99Ms, met: kafkaLag.p99Ms <= 250 },
        postgresBusP99Ms: { target: 100, measured: pgLag.p99Ms, met: pgLag.p99Ms <= 100 },
      },
    };
  } finally {
    await runCleanups(cleanups);
  }
}

async function kafka(cleanups: Cleanup[]): Promise<string[]> {
  if (process.env.KAFKA_BROKERS) return process.env.KAFKA_BROKERS.split(',');
  const { startBroker } = await import('../infra/kafka/broker.mjs');
  const broker = await startBroker({
    // Below the ephemeral port range (32768+), where an outgoing connection could hold the port.
    port: Number(process.env.KEEL_BENCH_KAFKA_PORT ?? 29592),
    controllerPort: Number(process.env.KEEL_BENCH_KAFKA_CONTROLLER_PORT ?? 29593),
    dataDir: resolve('.keel-bench/fanout-kafka'),
    quiet: true,
  });
  if (!broker.alreadyRunning) cleanups.push(async () => void (await broker.stop({ quiet: true })));
  return [broker.brokers];
}

function recordEvent(tenantId: string, i: number, payloadBytes: number): NewEvent {
  const payload = { n: i, note: 'x'.repeat(Math.max(0, payloadBytes - 20)) };
  return {
    type: 'RecordIngested',
    tenantId,
    actor: { kind: 'apiKey', id: 'bench' },
    correlationId: `bench-${i}`,
    traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    data: {
      source: 'bench',
      entityType: 'order',
      externalId: `o-${i}`,
      payload,
      receivedVia: 'api',
      contentHash: canonicalHash(payload),
    },
  };
}

/** Topics this run created; deleted at the end so the broker's data dir does not grow run after run. */
const benchTopics: string[] = [];

const tenantIds = Array.from({ length: 1000 }, (_, i) => `bench${String(i).padStart(4, '0')}`);

async function relayThroughput(o: {
  store: EventStore;
  pool: pg.Pool;
  brokers: string[];
  totalEvents: number;
  payloadBytes: number;
  batchSize: number;
}) {
  const { store, pool, brokers } = o;
  // Append the backlog: 1,000 events per call over 1,000 tenants (a fresh database: it starts at 0).
  const t0 = performance.now();
  let head = 0;
  for (let done = 0; done < o.totalEvents; done += 1000) {
    const n = Math.min(1000, o.totalEvents - done);
    const r = await store.appendBatch(
      Array.from({ length: n }, (_, k) => {
        const tenant = tenantIds[(done + k) % tenantIds.length]!;
        return {
          streamId: `record-${tenant}-order-${done + k}`,
          events: [recordEvent(tenant, done + k, o.payloadBytes)],
        };
      }),
    );
    head = r.globalPosition;
  }
  const appendSeconds = (performance.now() - t0) / 1000;

  // The same messages the relay will send, pre-encoded, for the bare producer baseline.
  const codec = defaultEventCodec();
  const messages: Message[] = [];
  for (let after = 0; after < head;) {
    const r = await store.readAll({ after, maxCount: 10_000 });
    for (const e of r.events) messages.push(toKafkaMessage(e, codec));
    if (r.events.length === 0) await new Promise((res) => setTimeout(res, 10)); // not visible yet (gap-safe)
    after = r.position;
  }
  const client = createKafkaClient({ brokers, logger, clientId: 'bench' });
  const stamp = Date.now();
  const topics = {
    raw: `keel.bench.raw.${stamp}`,
    threaded: `keel.bench.relay-thread.${stamp}`,
    inProcess: `keel.bench.relay-inproc.${stamp}`,
  };
  for (const topic of Object.values(topics)) {
    await ensureTopics(client, { topic, deadLetterTopic: `${topic}.dlq` });
    benchTopics.push(topic, `${topic}.dlq`);
  }

  const kafkajs = await import('kafkajs');
  const chunks = chunkBySize(messages, o.batchSize, 1024 * 1024);
  // kafkajs alone, as it comes (DefaultPartitioner: the baseline), and with the relay's caching
  // partitioner (same partitions; shows what partitioning by key costs in kafkajs).
  const rawRun = async (createPartitioner: ICustomPartitioner) => {
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner });
    await producer.connect();
    await producer.send({ topic: topics.raw, acks: -1, messages: messages.slice(0, 1000) }); // warm-up
    const r0 = performance.now();
    for (const chunk of chunks) await producer.send({ topic: topics.raw, acks: -1, messages: chunk });
    const seconds = (performance.now() - r0) / 1000;
    await producer.disconnect();
    return seconds;
  };
  const rawSeconds = await rawRun(kafkajs.default.Partitioners.DefaultPartitioner);
  const rawCachedSeconds = await rawRun(cachingDefaultPartitioner);

  const runRelay = async (topic: string, producerThread: boolean) => {
    const relay = startRelay({
      store,
      pool,
      ...(producerThread ? { brokers } : { kafka: client }),
      producerThread,
      topic,
      name: `relay:${topic}`,
      batchSize: o.batchSize,
      logger,
      registry: new Registry(),
      pollIntervalMs: 5,
    });
    await relay.activated;
    const s0 = performance.now();
    await relay.waitFor(head);
    const seconds = (performance.now() - s0) / 1000;
    await relay.stop();
    return seconds;
  };
  const inProcessSeconds = await runRelay(topics.inProcess, false);
  const threadedSeconds = await runRelay(topics.threaded, true);

  const events = messages.length;
  const rate = (s: number) => Math.round(events / s);
  const rawRate = rate(rawSeconds);
  return {
    events,
    payloadBytes: o.payloadBytes,
    avgMessageBytes: Math.round(messages.reduce((s, m) => s + (m.value as Buffer).length, 0) / events),
    backlogAppendEventsPerSec: Math.round(o.totalEvents / appendSeconds),
    relay: {
      seconds: round(inProcessSeconds),
      eventsPerSec: rate(inProcessSeconds),
      batchSize: o.batchSize,
      note: 'the default relay: readAll + Avro encode (validating) + idempotent produce (acks=all) on one thread, next batch prefetched, checkpoint per batch',
    },
    relayWithProducerThread: {
      seconds: round(threadedSeconds),
      eventsPerSec: rate(threadedSeconds),
      ratio: round(rate(threadedSeconds) / rawRate),
    },
    rawProducer: {
      seconds: round(rawSeconds),
      eventsPerSec: rawRate,
      note: 'kafkajs alone: the same pre-encoded messages, same producer settings and chunking, no store, no encoding, its DefaultPartitioner',
    },
    rawProducerCachedPartitioner: {
      seconds: round(rawCachedSeconds),
      eventsPerSec: rate(rawCachedSeconds),
      note: 'the same, with the partitioner the relay uses (DefaultPartitioner remembered per key: same partitions)',
    },
    ratio: round(rate(inProcessSeconds) / rawRate),
    ratioToCachedPartitionerRaw: round(rate(inProcessSeconds) / rate(rawCachedSeconds)),
  };
}

function chunkBySize(messages: Message[], maxCount: number, maxBytes: number): Message[][] {
  const out: Message[][] = [];
  for (let i = 0; i < messages.length; i += maxCount) {
    let chunk: Message[] = [];
    let bytes = 0;
    for (const m of messages.slice(i, i + maxCount)) {
      const size = (m.value as Buffer).length + 160 + String(m.key).length; // as the relay counts
      if (chunk.length && bytes + size > maxBytes) {
        out.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(m);
      bytes += size;
    }
    if (chunk.length) out.push(chunk);
  }
  return out;
}

async function endToEnd(
  kind: 'kafka' | 'postgres',
  o: { store: EventStore; pool: pg.Pool; brokers: string[]; rate: number; seconds: number; payloadBytes: number },
) {
  const { store, pool } = o;
  const topic = `keel.bench.lag.${kind}.${Date.now()}`;
  const issuedAt = new Map<string, number>();
  const lags: number[] = [];
  // Where the time goes, per event: append issued → (Kafka: broker acked the relay's batch) →
  // handed to the handler → projector committed.
  const stages = { published: [] as number[], delivered: [] as number[], applied: [] as number[] };
  const acks: { position: number; at: number }[] = [];
  const ackedAt = (position: number) => {
    let lo = 0;
    let hi = acks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (acks[mid]!.position >= position) hi = mid;
      else lo = mid + 1;
    }
    return acks[lo] && acks[lo]!.position >= position ? acks[lo]!.at : undefined;
  };
  const warmupUntil = { t: Infinity };
  const name = `projector-bench-${kind}`;
  const apply = projector({
    name,
    pool,
    apply: async (events: RecordedEvent[], tx) => {
      await tx.query(
        'insert into bench_applied (tenant_id, event_id, global_position) select * from unnest($1::text[], $2::text[], $3::bigint[])',
        [events.map((e) => e.tenantId), events.map((e) => e.eventId), events.map((e) => e.globalPosition)],
      );
    },
  });
  const handler: BusHandler = async (batch) => {
    const received = performance.now();
    await apply(batch); // committed when this resolves
    const now = performance.now();
    for (const e of batch.events) {
      const t = issuedAt.get(e.eventId);
      if (t === undefined) continue;
      issuedAt.delete(e.eventId);
      if (t < warmupUntil.t) continue;
      lags.push(now - t);
      const published = ackedAt(e.globalPosition);
      if (published !== undefined) {
        stages.published.push(published - t);
        stages.delivered.push(received - published);
      } else stages.delivered.push(received - t);
      stages.applied.push(now - received);
    }
  };

  let bus: EventBus;
  let stopRelay = async (): Promise<void> => undefined;
  if (kind === 'kafka') {
    const client = createKafkaClient({ brokers: o.brokers, logger, clientId: 'bench-lag' });
    await ensureTopics(client, { topic, deadLetterTopic: `${topic}.dlq` });
    benchTopics.push(topic, `${topic}.dlq`);
    const relay = startRelay({
      store,
      pool,
      brokers: o.brokers,
      producerThread: process.env.KEEL_BENCH_PRODUCER_THREAD === '1',
      topic,
      name: `relay:${topic}`,
      logger,
      registry: new Registry(),
      pollIntervalMs: 5,
      beforeCheckpoint: async ({ position }) => void acks.push({ position, at: performance.now() }),
    });
    await relay.activated;
    // Only new events matter: skip the backlog.
    await relay.waitFor(await store.headPosition());
    stopRelay = () => relay.stop();
    bus = createKafkaBus({
      brokers: o.brokers,
      kafka: client,
      topic,
      deadLetterTopic: `${topic}.dlq`,
      logger,
      ensureTopics: false,
    });
  } else {
    bus = createPostgresBus({ store, pool, logger, pollIntervalMs: 10 });
  }
  const consumer = await bus.consume({ group: name, handler, from: 'latest', maxBatchSize: 500 });
  await consumer.ready;
  await new Promise((r) => setTimeout(r, 1000));

  // Paced appends: every 10 ms, the events due by then, in one appendBatch (one transaction).
  // The clock starts before the append call: the lag includes the append itself.
  const start = performance.now();
  warmupUntil.t = start + 2_000;
  let sent = 0;
  while (performance.now() - start < o.seconds * 1000) {
    const due = Math.floor(((performance.now() - start) / 1000) * o.rate);
    const n = due - sent;
    if (n > 0) {
      const t = performance.now();
      const appends = Array.from({ length: n }, (_, k) => {
        const seq = sent + k;
        const tenant = tenantIds[seq % tenantIds.length]!;
        const event = { ...recordEvent(tenant, seq, o.payloadBytes), eventId: uuidv7() };
        issuedAt.set(event.eventId, t);
        return { streamId: `record-${tenant}-lag${kind}-${seq}`, events: [event] };
      });
      await store.appendBatch(appends);
      sent += n;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const drainUntil = performance.now() + 30_000;
  while (issuedAt.size > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  const missing = issuedAt.size;
  await consumer.stop();
  await bus.close();
  await stopRelay();
  lags.sort((a, b) => a - b);
  const q = (p: number) => round(percentile(lags, p) ?? NaN);
  const p50p99 = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    const at = (p: number) => round(percentile(v, p) ?? NaN);
    return { p50Ms: at(0.5), p99Ms: at(0.99) };
  };
  return {
    events: sent,
    measured: lags.length,
    notAppliedWithin30s: missing,
    p50Ms: q(0.5),
    p90Ms: q(0.9),
    p99Ms: q(0.99),
    maxMs: round(lags[lags.length - 1] ?? NaN),
    achievedRate: Math.round(sent / o.seconds),
    stages: {
      ...(kind === 'kafka' ? { appendToBrokerAck: p50p99(stages.published) } : {}),
      [kind === 'kafka' ? 'brokerAckToHandler' : 'appendToHandler']: p50p99(stages.delivered),
      handlerToCommitted: p50p99(stages.applied),
    },
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
