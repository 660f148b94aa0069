/**
 * The relay against a real broker: what it publishes (key, Avro value, headers), one active relay
 * per store with takeover, lag metrics, a relay SIGKILLed between the broker's ack and its
 * checkpoint, and a broker crash and restart while events are being appended.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUS_HEADERS,
  createKafkaBus,
  createKafkaClient,
  decodeEvent,
  defaultEventCodec,
  ensureTopics,
  projector,
  readCheckpoint,
  startRelay,
  type BusConsumer,
  type RecordedEvent,
  type Relay,
} from '@keel/shared-events';
import { describeWithServer, kafkaBrokers, kafkaSkipReason } from '../../test/support.ts';
import {
  appendRound,
  appendRoundAt,
  appliedCount,
  appliedReport,
  applyTestProjection,
  busDatabase,
  deliveryTracker,
  spawnFixture,
  tenants,
  testLogger,
  uniqueName,
  waitFor,
  type BusDatabase,
} from './bus-support.ts';

interface Raw {
  partition: number;
  offset: number;
  key: string;
  headers: Record<string, string>;
  event: RecordedEvent;
}

/** Reads a topic from the start with a plain kafkajs consumer (no Keel code on this side). */
async function readTopic(brokers: string[], topic: string) {
  const kafka = createKafkaClient({ brokers, logger: testLogger, clientId: 'raw-reader' });
  const consumer = kafka.consumer({ groupId: uniqueName('raw-reader'), sessionTimeout: 6000, maxWaitTimeInMs: 200 });
  const got: Raw[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      got.push({
        partition,
        offset: Number(message.offset),
        key: message.key!.toString(),
        headers,
        event: decodeEvent(message.value!),
      });
    },
  });
  return { got, stop: () => consumer.disconnect() };
}

describeWithServer('kafka', 'relay (real broker)', kafkaBrokers(), kafkaSkipReason(), (brokerList) => {
  const brokers = brokerList.split(',');
  let db: BusDatabase;
  const relays: Relay[] = [];
  const start = (o: Partial<Parameters<typeof startRelay>[0]> & { topic: string }) => {
    const r = startRelay({
      store: db.store,
      pool: db.pool,
      brokers,
      logger: testLogger,
      registry: new Registry(),
      pollIntervalMs: 5,
      ...o,
    });
    relays.push(r);
    return r;
  };
  beforeAll(async () => {
    db = await busDatabase('relay');
  });
  afterAll(async () => {
    await Promise.allSettled(relays.map((r) => r.stop()));
    await db?.close();
  });

  it.each([
    ['its producer thread', true, 'pa'],
    ['the same thread', false, 'pz'],
  ])(
    'publishes every event in order with key = tenantId, the Avro value and the headers (producing on %s)',
    async (_label, producerThread, prefix) => {
      const topic = uniqueName('keel.test.relay');
      const ts = tenants(6, prefix);
      const head = await appendRoundAt(db.store, ts, 0, 10);
      const relay = producerThread
        ? start({ topic, name: `relay:${topic}`, producerThread: true })
        : start({ topic, name: `relay:${topic}`, kafka: createKafkaClient({ brokers, logger: testLogger }) });
      await relay.waitFor(head, 30_000);
      const reader = await readTopic(brokers, topic);
      // The relay publishes the whole log: earlier tests' events too. Ours are the prefix's.
      const ours = () => reader.got.filter((m) => m.key.startsWith(prefix));
      await waitFor('60 messages', () => ours().length >= 60);
      await new Promise((r) => setTimeout(r, 200));
      await reader.stop();
      const { events: stored } = await db.store.readAll({ after: 0, maxCount: 10_000 });
      const byId = new Map(stored.map((e) => [e.eventId, e]));
      const fingerprint = defaultEventCodec().fingerprintOf('RecordIngested', 2);
      expect(ours()).toHaveLength(60);
      expect(reader.got).toHaveLength(stored.length); // and nothing else
      const partitionOf = new Map<string, number>();
      for (const m of ours()) {
        const original = byId.get(m.event.eventId)!;
        expect(m.event).toEqual(original);
        expect(m.key).toBe(original.tenantId);
        expect(m.headers[BUS_HEADERS.eventType]).toBe('RecordIngested');
        expect(m.headers[BUS_HEADERS.fingerprint]).toBe(fingerprint);
        expect(m.headers[BUS_HEADERS.tenantId]).toBe(original.tenantId);
        expect(m.headers[BUS_HEADERS.traceparent]).toBe(original.traceparent);
        expect(partitionOf.get(m.key) ?? m.partition).toBe(m.partition); // one tenant, one partition
        partitionOf.set(m.key, m.partition);
      }
      // Within a partition, offsets follow the global log.
      const byPartition = new Map<number, Raw[]>();
      for (const m of ours()) byPartition.set(m.partition, [...(byPartition.get(m.partition) ?? []), m]);
      for (const list of byPartition.values()) {
        const positions = list.sort((x, y) => x.offset - y.offset).map((m) => m.event.globalPosition);
        expect(positions).toEqual([...positions].sort((x, y) => x - y));
      }
    },
  );

  it('runs one active relay per store; a standby takes over when it stops, from the checkpoint', async () => {
    const topic = uniqueName('keel.test.relay');
    const name = `relay:${topic}`;
    const ts = tenants(4, 'pb');
    const a = start({ topic, name, holder: 'relay-a', leaseTtlMs: 1_000 });
    await a.activated;
    const b = start({ topic, name, holder: 'relay-b', leaseTtlMs: 1_000 });
    await a.waitFor(await appendRoundAt(db.store, ts, 0, 25), 30_000);
    for (let i = 0; i < 10; i++) {
      expect([a.isActive(), b.isActive()]).toEqual([true, false]);
      await new Promise((r) => setTimeout(r, 100));
    }
    await a.stop();
    await b.activated;
    expect(b.isActive()).toBe(true);
    const head = await appendRoundAt(db.store, ts, 25, 25);
    await b.waitFor(head, 30_000);
    expect(await readCheckpoint(db.pool, name)).toMatchObject({ position: head, holder: 'relay-b' });
    const reader = await readTopic(brokers, topic);
    // The topic holds the whole log (earlier tests' events too); ours are the pb tenants'.
    const ours = () => reader.got.filter((m) => m.event.tenantId.startsWith('pb'));
    await waitFor('200 messages', () => new Set(ours().map((m) => m.event.eventId)).size >= 200);
    await reader.stop();
    const { events: stored } = await db.store.readAll({
      after: 0,
      maxCount: 100_000,
      filter: { categories: ['record'] },
    });
    const expected = stored.filter((e) => e.tenantId.startsWith('pb')).map((e) => e.eventId);
    expect(new Set(ours().map((m) => m.event.eventId))).toEqual(new Set(expected));
  });

  it('reports lag and checkpoint as Prometheus gauges', async () => {
    const topic = uniqueName('keel.test.relay');
    const registry = new Registry();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let first = true;
    const head = await appendRoundAt(db.store, tenants(2, 'pm'), 0, 50);
    const relay = start({
      topic,
      name: `relay:${topic}`,
      registry,
      batchSize: 20,
      beforeCheckpoint: async () => {
        if (first) {
          first = false;
          await held; // the first batch waits: the relay is behind
        }
      },
    });
    const gauge = async (name: string) =>
      (await registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.relay === relay.name)?.value;
    await waitFor('a lag reading', async () => ((await gauge('keel_relay_lag_events')) ?? 0) > 0, 10_000);
    expect(await gauge('keel_relay_active')).toBe(1);
    expect(await gauge('keel_relay_head_position')).toBeGreaterThan((await gauge('keel_relay_checkpoint_position'))!);
    release();
    await relay.waitFor(head, 30_000);
    expect(await gauge('keel_relay_checkpoint_position')).toBe(head);
    await waitFor('lag back to 0', async () => (await gauge('keel_relay_lag_events')) === 0, 10_000);
    expect(await gauge('keel_relay_published_events_total')).toBeGreaterThanOrEqual(100);
    const text = await registry.metrics();
    expect(text).toContain('keel_relay_lag_events{relay=');
  });

  it(
    'a relay SIGKILLed after the broker acked a batch but before its checkpoint: after a restart every event arrives, duplicates are absorbed',
    { timeout: 120_000 },
    async () => {
      const topic = uniqueName('keel.test.relay');
      const name = 'projector-relay-kill';
      const ts = tenants(10, 'rk');
      const last = await appendRoundAt(db.store, ts, 0, 100);
      await waitFor('our events visible', async () => (await db.store.headPosition()) >= last);
      // Pause (and be killed) at the batch holding our 300th event: earlier tests' events come first in the log.
      const { events: all } = await db.store.readAll({ after: 0, maxCount: 100_000 });
      const pauseAt = all.filter((e) => e.tenantId.startsWith('rk'))[300]!.globalPosition;
      const bus = createKafkaBus({
        brokers,
        topic,
        deadLetterTopic: `${topic}.dlq`,
        logger: testLogger,
        sessionTimeoutMs: 6_000,
      });
      await bus.ensureTopics();
      const seen = deliveryTracker('rk');
      const apply = projector({ name, pool: db.pool, apply: (events, tx) => applyTestProjection(tx, name, events) });
      const consumer: BusConsumer = await bus.consume({
        group: name,
        handler: async (batch) => {
          seen.see(batch.events);
          await apply(batch);
        },
      });
      try {
        const env = {
          DATABASE_URL: db.url,
          KAFKA_BROKERS: brokerList,
          TOPIC: topic,
          BATCH: '100',
          LEASE_TTL_MS: '1500',
        };
        // The first relay produces on its thread (killed with the process), the second on its main thread.
        const first = spawnFixture('relay-child', { ...env, PAUSE_AT_POSITION: String(pauseAt), PRODUCER_THREAD: '1' });
        const reached = (m: Record<string, unknown>) =>
          ((m.acked as { position?: number } | undefined)?.position ?? 0) >= pauseAt;
        const acked = (await first.waitFor(reached)).acked as { position: number };
        await first.kill('SIGKILL');
        const checkpoint = (await readCheckpoint(db.pool, `relay:${topic}`))!.position;
        expect(checkpoint).toBeLessThan(acked.position); // published, never checkpointed
        const inFlight = (await db.store.readAll({ after: checkpoint, maxCount: 10_000 })).events.filter(
          (e) => e.globalPosition <= acked.position && e.tenantId.startsWith('rk'),
        ).length;
        expect(inFlight).toBeGreaterThan(0);
        await appendRound(db.store, ts, 100, 20); // appends go on while no relay runs

        const second = spawnFixture('relay-child', env);
        try {
          await second.waitFor((m) => m.active === true);
          await waitFor(
            'all 1200 events applied',
            async () => (await appliedCount(db.pool, name, 'rk')) >= 1200,
            90_000,
          );
        } finally {
          await second.kill('SIGTERM');
        }
        const report = await appliedReport(db.pool, name, 'rk');
        expect(report.total).toBe(1200);
        expect(report.doubled).toBe(0);
        expect(report.outOfOrder).toEqual([]);
        expect(seen.gaps).toEqual([]);
        // The batch acked before the kill was published again: the projector saw those duplicates.
        expect(seen.redelivered).toBeGreaterThanOrEqual(inFlight);
      } finally {
        await consumer.stop();
        await bus.close();
      }
    },
  );

  describe('broker crash and restart while appending', () => {
    const javaOk = (() => {
      try {
        execFileSync(process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java', ['-version'], {
          stdio: 'ignore',
        });
        return true;
      } catch {
        return false;
      }
    })();
    const required = (process.env.KEEL_REQUIRE ?? '').split(',').includes('kafka');
    it.skipIf(!javaOk && !required)(
      'nothing the store acknowledged is lost on the way to the consumers',
      { timeout: 240_000 },
      async () => {
        // A broker of our own, so the crash does not disturb the other suites' broker.
        const { startBroker } = await import('../../infra/kafka/broker.mjs');
        const port = await freePort();
        const controllerPort = await freePort();
        const dataDir = mkdtempSync(join(tmpdir(), 'keel-relay-broker-'));
        let broker = await startBroker({ port, controllerPort, dataDir, quiet: true });
        const own = [broker.brokers];
        const topic = 'keel.events.v1';
        const name = 'projector-broker-restart';
        const kafka = createKafkaClient({ brokers: own, logger: testLogger });
        await ensureTopics(kafka, { topic });
        const bus = createKafkaBus({ brokers: own, logger: testLogger, sessionTimeoutMs: 6_000 });
        const apply = projector({ name, pool: db.pool, apply: (events, tx) => applyTestProjection(tx, name, events) });
        const consumer = await bus.consume({ group: name, handler: apply });
        // Producing on its thread: a failed send resets the thread's producer and retries.
        const relay = startRelay({
          store: db.store,
          pool: db.pool,
          brokers: own,
          producerThread: true,
          logger: testLogger,
          registry: new Registry(),
          pollIntervalMs: 5,
          name: 'relay:broker-restart',
        });
        relays.push(relay);
        const ts = tenants(12, 'br');
        let acknowledged = 0;
        try {
          await consumer.ready;
          const appending = (async () => {
            for (let round = 0; round < 60; round++) {
              acknowledged += await appendRound(db.store, ts, round * 5, 5);
              await new Promise((r) => setTimeout(r, 100));
            }
          })();
          await waitFor(
            'some events applied before the crash',
            async () => (await appliedCount(db.pool, name, 'br')) >= 300,
          );
          broker = await broker.restart({ signal: 'SIGKILL', downMs: 3_000, quiet: true });
          await appending;
          expect(acknowledged).toBe(12 * 5 * 60);
          await waitFor(
            'every acknowledged event applied',
            async () => (await appliedCount(db.pool, name, 'br')) >= acknowledged,
            150_000,
          );
          const report = await appliedReport(db.pool, name, 'br');
          expect(report.total).toBe(acknowledged);
          expect(report.doubled).toBe(0);
          expect(report.outOfOrder).toEqual([]);
        } finally {
          await relay.stop();
          await consumer.stop().catch(() => undefined);
          await bus.close().catch(() => undefined);
          await broker.stop({ quiet: true });
          rmSync(dataDir, { recursive: true, force: true });
        }
      },
    );
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
