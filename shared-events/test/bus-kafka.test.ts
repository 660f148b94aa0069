/**
 * The Kafka bus against a real broker (the suite's, from test/global-setup.ts): the shared
 * projector/runner contract behind a relay, per-tenant order across 12 partitions and 3 group
 * members with rebalances in the middle, a member SIGKILLed mid-batch, and a poison message.
 * Every test uses its own topic and groups.
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKafkaBus,
  createKafkaClient,
  projector,
  startRelay,
  type BusConsumer,
  type EventBus,
  type Relay,
} from '@keel/shared-events';
import { describeWithServer, kafkaBrokers, kafkaSkipReason } from '../../test/support.ts';
import { busContract } from './bus-contract.ts';
import {
  appendRound,
  appendRoundAt,
  appliedCount,
  appliedReport,
  applyTestProjection,
  busDatabase,
  collectDeadLetterTopic,
  deliveryTracker,
  spawnFixture,
  teardown,
  tenants,
  testLogger,
  uniqueName,
  waitFor,
  type BusDatabase,
} from './bus-support.ts';

describeWithServer('kafka', 'Kafka bus (real broker)', kafkaBrokers(), kafkaSkipReason(), (brokerList) => {
  const brokers = brokerList.split(',');

  /** A store, a topic of its own, the bus over it and a relay feeding it. */
  async function kafkaSetup(prefix: string) {
    const db = await busDatabase(prefix);
    const topic = uniqueName('keel.test.events');
    const bus = createKafkaBus({
      brokers,
      topic,
      deadLetterTopic: `${topic}.dlq`,
      logger: testLogger,
      sessionTimeoutMs: 6_000,
    });
    await bus.ensureTopics();
    const relay = startRelay({
      store: db.store,
      pool: db.pool,
      brokers,
      topic,
      logger: testLogger,
      registry: new Registry(),
      pollIntervalMs: 5,
    });
    return { db, topic, bus, relay };
  }

  describe('projector and runner contract', () => {
    busContract(async () => {
      const { db, topic, bus, relay } = await kafkaSetup('kbus');
      const dlq = await collectDeadLetterTopic(brokers, `${topic}.dlq`);
      return {
        db,
        bus,
        deadLetters: async (group) => dlq.messages.filter((m) => m.group === group),
        close: () =>
          teardown(
            () => dlq.stop(),
            () => relay.stop(),
            () => bus.close(),
            () => db.close(),
          ),
      };
    });
  });

  describe('group behaviour', () => {
    let db: BusDatabase;
    let bus: EventBus;
    let relay: Relay;
    let topic: string;
    const consumers: BusConsumer[] = [];
    beforeAll(async () => {
      ({ db, bus, relay, topic } = await kafkaSetup('krb'));
    });
    afterAll(() =>
      teardown(
        () => Promise.allSettled(consumers.map((c) => c.stop())),
        () => relay?.stop(),
        () => bus?.close(),
        () => db?.close(),
      ),
    );

    it(
      'keeps per-tenant order across 12 partitions and 3 members of one group, through rebalances',
      { timeout: 120_000 },
      async () => {
        const ts = tenants(36, 'rb');
        const name = 'projector-rebalance';
        const seen = deliveryTracker('rb');
        const lanesOfTenant = new Map<string, Set<string>>();
        const batchesBy = { a: 0, b: 0, c: 0 };
        const member = async (id: keyof typeof batchesBy) => {
          const apply = projector({
            name,
            pool: db.pool,
            apply: (events, tx) => applyTestProjection(tx, name, events),
          });
          const c = await bus.consume({
            group: name,
            maxBatchSize: 20,
            handler: async (batch) => {
              batchesBy[id]++;
              seen.see(batch.events);
              for (const e of batch.events) {
                const set = lanesOfTenant.get(e.tenantId) ?? new Set();
                set.add(batch.lane);
                lanesOfTenant.set(e.tenantId, set);
              }
              await apply(batch);
              await new Promise((r) => setTimeout(r, 5)); // keep batches flowing while the group changes
            },
          });
          consumers.push(c);
          return c;
        };

        await appendRound(db.store, ts, 0, 20);
        const a = await member('a');
        await a.ready;
        expect(a.lanes()).toHaveLength(12);
        await waitFor('a part of round 1 applied', async () => (await appliedCount(db.pool, name, 'rb')) >= 200);

        // Two members join: the group rebalances while a is mid-stream.
        const [b, c] = await Promise.all([member('b'), member('c')]);
        await appendRound(db.store, ts, 20, 20);
        await waitFor(
          'three members sharing the partitions',
          () =>
            a.lanes().length + b.lanes().length + c.lanes().length === 12 &&
            b.lanes().length > 0 &&
            c.lanes().length > 0,
        );
        await waitFor('b and c receiving', () => batchesBy.b > 0 && batchesBy.c > 0);

        // a leaves gracefully: another rebalance, b and c take its partitions over.
        await a.stop();
        await appendRound(db.store, ts, 40, 20);
        await waitFor('b and c own all 12 partitions', () => b.lanes().length + c.lanes().length === 12);
        await waitFor(
          'all 2160 events applied',
          async () => (await appliedCount(db.pool, name, 'rb')) >= 36 * 60,
          90_000,
        );

        const report = await appliedReport(db.pool, name, 'rb');
        expect(report.total).toBe(36 * 60);
        expect(report.doubled).toBe(0);
        expect(report.outOfOrder).toEqual([]);
        expect(seen.gaps).toEqual([]); // first deliveries of each tenant came in order, without a gap
        // Each tenant stayed on its one partition, and the tenants spread over the partitions.
        expect([...lanesOfTenant.values()].every((s) => s.size === 1)).toBe(true);
        expect(new Set([...lanesOfTenant.values()].map((s) => [...s][0])).size).toBeGreaterThanOrEqual(10);
        expect(batchesBy.a).toBeGreaterThan(0);
      },
    );

    it(
      'a member SIGKILLed mid-batch: the group resumes from the checkpoint, no loss, no double application',
      { timeout: 120_000 },
      async () => {
        const ts = tenants(20, 'kk');
        const group = uniqueName('projector-kill');
        await appendRound(db.store, ts, 0, 30);
        const env = { DATABASE_URL: db.url, KAFKA_BROKERS: brokerList, TOPIC: topic, GROUP: group };
        const first = spawnFixture('projector-child', { ...env, SLOW_MS: '300' });
        await first.waitFor((m) => 'ready' in m);
        // Once three batches are committed, kill it inside the transaction of a later batch (it
        // sleeps 300 ms after writing, before committing).
        await first.waitFor((m) => 'committed' in m && first.messages.filter((x) => 'committed' in x).length >= 3);
        const mark = first.messages.length;
        await first.waitFor((m) => 'applying' in m && first.messages.indexOf(m) >= mark);
        await first.kill('SIGKILL');
        // The topic also holds earlier tests' events; the member applies them all, kk's come last.
        const atKill = await appliedCount(db.pool, group);
        expect(atKill).toBeGreaterThan(0); // the committed batches stay
        expect(await appliedCount(db.pool, group, 'kk')).toBeLessThan(600);

        const second = spawnFixture('projector-child', env);
        try {
          await second.waitFor((m) => 'ready' in m);
          await waitFor(
            'all 600 events applied',
            async () => (await appliedCount(db.pool, group, 'kk')) >= 600,
            90_000,
          );
          await new Promise((r) => setTimeout(r, 500)); // anything applied twice would show up now
        } finally {
          await second.kill('SIGTERM');
        }
        expect((await appliedReport(db.pool, group, 'kk')).total).toBe(600);
        const report = await appliedReport(db.pool, group); // every tenant this member applied
        expect(report.doubled).toBe(0);
        expect(report.outOfOrder).toEqual([]);
        // The killed batch was in flight: what the second member applied overlaps what the first had fetched.
        expect(second.messages.filter((m) => 'applying' in m).length).toBeGreaterThan(0);
      },
    );

    it('a message that cannot be decoded is parked on the dead-letter topic and skipped', async () => {
      const ts = tenants(2, 'pp');
      const group = uniqueName('projector-poison');
      const kafka = createKafkaClient({ brokers, logger: testLogger });
      const producer = kafka.producer();
      await producer.connect();
      await relay.waitFor(await appendRoundAt(db.store, ts, 0, 5), 30_000);
      await producer.send({ topic, messages: [{ key: 'pp000', value: Buffer.from('definitely not avro') }] });
      await producer.disconnect();
      await appendRound(db.store, ts, 5, 5);
      const dlq = await collectDeadLetterTopic(brokers, `${topic}.dlq`);
      const got = deliveryTracker('pp');
      consumers.push(
        await bus.consume({
          group,
          handler: async (batch) => {
            got.see(batch.events);
          },
        }),
      );
      await waitFor('20 events delivered', () => got.delivered >= 20);
      await waitFor('the poison message parked', () => dlq.messages.some((m) => m.group === group));
      await dlq.stop();
      const parked = dlq.messages.filter((m) => m.group === group);
      expect(parked).toHaveLength(1);
      expect(parked[0]!.reason).toMatch(/^undecodable: /);
      expect(parked[0]!.value?.toString()).toBe('definitely not avro');
      expect(got.gaps).toEqual([]);
    });
  });
});
