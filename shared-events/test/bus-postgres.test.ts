/**
 * The PostgreSQL bus (embedded and postgres profiles): the same projector/runner contract as the
 * Kafka bus, on the store's own log, plus what is particular to it: one active member per group
 * (a lease), standbys that take over, and the profile switch.
 */
import { afterAll, describe, expect, it } from 'vitest';
import {
  busKindFor,
  createBus,
  createPostgresBus,
  projector,
  readCheckpoint,
  type BusConsumer,
} from '@keel/shared-events';
import { busContract } from './bus-contract.ts';
import {
  appendRound,
  appendRoundAt,
  appliedCount,
  appliedReport,
  applyTestProjection,
  busDatabase,
  seqOf,
  teardown,
  tenants,
  testLogger,
  waitFor,
  type BusDatabase,
} from './bus-support.ts';

describe('PostgreSQL bus: projector and runner contract', () => {
  busContract(async () => {
    const db = await busDatabase('pgbus');
    const bus = createPostgresBus({
      store: db.store,
      pool: db.pool,
      logger: testLogger,
      leaseTtlMs: 2_000,
      pollIntervalMs: 10,
    });
    return {
      db,
      bus,
      deadLetters: (group) => bus.readDeadLetters({ group }),
      close: () =>
        teardown(
          () => bus.close(),
          () => db.close(),
        ),
    };
  });
});

describe('PostgreSQL bus: one active member per group', () => {
  let db: BusDatabase;
  const consumers: BusConsumer[] = [];
  afterAll(async () => {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await db?.close();
  });

  it('a standby takes over when the active member stops, from its checkpoint, without double application', async () => {
    db = await busDatabase('pgsb');
    const name = 'projector-standby';
    const busA = createPostgresBus({
      store: db.store,
      pool: db.pool,
      logger: testLogger,
      leaseTtlMs: 1_000,
      pollIntervalMs: 10,
    });
    const busB = createPostgresBus({
      store: db.store,
      pool: db.pool,
      logger: testLogger,
      leaseTtlMs: 1_000,
      pollIntervalMs: 10,
    });
    const handled = { a: 0, b: 0 };
    const make = (id: 'a' | 'b') => {
      const apply = projector({ name, pool: db.pool, apply: (events, tx) => applyTestProjection(tx, name, events) });
      return async (batch: Parameters<typeof apply>[0]) => {
        handled[id] += batch.events.length;
        await apply(batch);
      };
    };
    const ts = tenants(5, 'sb');
    await appendRound(db.store, ts, 0, 40);
    const a = await busA.consume({ group: name, handler: make('a'), maxBatchSize: 20 });
    consumers.push(a);
    await a.ready;
    const b = await busB.consume({ group: name, handler: make('b'), maxBatchSize: 20 });
    consumers.push(b);
    await waitFor('round 1 applied', async () => (await appliedCount(db.pool, name, 'sb')) >= 200);
    expect(a.lanes()).toEqual(['log']);
    expect(b.lanes()).toEqual([]); // standing by
    expect(handled.b).toBe(0);

    await a.stop();
    await b.ready;
    expect(b.lanes()).toEqual(['log']);
    const last = await appendRoundAt(db.store, ts, 40, 40);
    await waitFor('round 2 applied', async () => (await appliedCount(db.pool, name, 'sb')) >= 400);
    const report = await appliedReport(db.pool, name, 'sb');
    expect(report.total).toBe(400);
    expect(report.doubled).toBe(0);
    expect(report.outOfOrder).toEqual([]);
    expect(handled.b).toBeGreaterThanOrEqual(200);
    const cp = await readCheckpoint(db.pool, `group:${name}`);
    expect(cp?.position).toBe(last);
  });

  it('a group with from: latest starts at the head and sees only new events', async () => {
    const name = 'projector-latest';
    const ts = tenants(2, 'lt');
    const before = await appendRoundAt(db.store, ts, 0, 10);
    await waitFor('the head to pass the old events', async () => (await db.store.headPosition()) >= before);
    const bus = createPostgresBus({ store: db.store, pool: db.pool, logger: testLogger, pollIntervalMs: 10 });
    const got: number[] = [];
    const c = await bus.consume({
      group: name,
      from: 'latest',
      handler: async (batch) => {
        got.push(...batch.events.filter((e) => e.tenantId.startsWith('lt')).map(seqOf));
      },
    });
    consumers.push(c);
    await c.ready;
    await appendRound(db.store, ts, 10, 10);
    await waitFor('the new events', () => got.length >= 20);
    await new Promise((r) => setTimeout(r, 200));
    expect(got.sort((x, y) => x - y)).toEqual([
      11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20,
    ]);
  });
});

describe('profile → bus', () => {
  it('embedded and postgres use the PostgreSQL bus, kafka and distributed use Kafka', () => {
    expect(busKindFor('embedded')).toBe('postgres');
    expect(busKindFor('postgres')).toBe('postgres');
    expect(busKindFor('kafka')).toBe('kafka');
    expect(busKindFor('distributed')).toBe('kafka');
  });

  it('createBus builds the adapter of the profile', async () => {
    const db = await busDatabase('pgcb');
    try {
      const pgBus = createBus({
        config: { profile: 'embedded', kafkaBrokers: [] },
        store: db.store,
        pool: db.pool,
        logger: testLogger,
      });
      expect(pgBus.kind).toBe('postgres');
      await pgBus.close();
      const kafkaBus = createBus({
        config: { profile: 'kafka', kafkaBrokers: ['127.0.0.1:1'] },
        store: db.store,
        pool: db.pool,
        logger: testLogger,
      });
      expect(kafkaBus.kind).toBe('kafka'); // built lazily: nothing connects until consume()
      await kafkaBus.close();
      expect(() =>
        createBus({ config: { profile: 'distributed', kafkaBrokers: [] }, store: db.store, pool: db.pool }),
      ).toThrow(/KAFKA_BROKERS/);
    } finally {
      await db.close();
    }
  });
});
