/**
 * The projector and runner contract every bus adapter passes (bus-kafka.test.ts runs it on Kafka
 * behind the relay, bus-postgres.test.ts on the store's own log). Each test uses its own tenants
 * (a prefix) and its own group names, so tests share one store, topic and broker.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  PermanentFailure,
  projector,
  runner,
  type BusConsumer,
  type EventBus,
  type RecordedEvent,
} from '@keel/shared-events';
import {
  appendRound,
  appliedCount,
  appliedReport,
  applyTestProjection,
  deliveryTracker,
  seqOf,
  tenants,
  uniqueName,
  waitFor,
  type BusDatabase,
} from './bus-support.ts';

export interface BusHarness {
  db: BusDatabase;
  bus: EventBus;
  /** Dead letters of a group as the adapter stores them. */
  deadLetters(group: string): Promise<{ eventId: string; reason: string; attempts: number }[]>;
  close(): Promise<void>;
}

export function busContract(makeHarness: () => Promise<BusHarness>): void {
  let h: BusHarness;
  const consumers: BusConsumer[] = [];
  const consume = async (...args: Parameters<EventBus['consume']>) => {
    const c = await h.bus.consume(...args);
    consumers.push(c);
    return c;
  };
  beforeAll(async () => {
    h = await makeHarness();
  });
  afterAll(async () => {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await h?.close();
  });

  it('projector: applies every event exactly once, in per-tenant order, while events keep coming', async () => {
    const ts = tenants(8, 'ca');
    const name = uniqueName('projector-contract-a');
    const seen = deliveryTracker('ca');
    await appendRound(h.db.store, ts, 0, 25);
    await consume({
      group: name,
      maxBatchSize: 40,
      handler: async (batch) => {
        seen.see(batch.events);
        return projector({ name, pool: h.db.pool, apply: (events, tx) => applyTestProjection(tx, name, events) })(
          batch,
        );
      },
    });
    await appendRound(h.db.store, ts, 25, 25);
    await appendRound(h.db.store, ts, 50, 25);
    await waitFor('600 events applied', async () => (await appliedCount(h.db.pool, name, 'ca')) >= 600);
    const report = await appliedReport(h.db.pool, name, 'ca');
    expect(report.total).toBe(600);
    expect(report.doubled).toBe(0);
    expect(report.outOfOrder).toEqual([]);
    expect([...report.perTenant.values()]).toEqual(Array(8).fill(75));
    expect(seen.gaps).toEqual([]);
  });

  it('projector: events it already applied are skipped when they are delivered again', async () => {
    const ts = tenants(5, 'cb');
    const name = uniqueName('projector-contract-b');
    await appendRound(h.db.store, ts, 0, 40);
    const apply = (events: RecordedEvent[], tx: Parameters<typeof applyTestProjection>[0]) =>
      applyTestProjection(tx, name, events);
    const first = await consume({ group: `${name}-1`, handler: projector({ name, pool: h.db.pool, apply }) });
    await waitFor('200 events applied', async () => (await appliedCount(h.db.pool, name, 'cb')) >= 200);
    await first.stop();
    // A second group feeding the same projector redelivers everything from the start.
    const again = deliveryTracker('cb');
    const second = await consume({
      group: `${name}-2`,
      handler: async (batch) => {
        await projector({ name, pool: h.db.pool, apply })(batch);
        again.see(batch.events);
      },
    });
    await waitFor('the redelivery of all 200 events', () => again.delivered >= 200);
    await second.stop();
    const report = await appliedReport(h.db.pool, name, 'cb');
    expect(report.total).toBe(200);
    expect(report.doubled).toBe(0);
  });

  it('projector: a failing batch is rolled back and retried; nothing is lost or applied twice', async () => {
    const ts = tenants(4, 'cc');
    const name = uniqueName('projector-contract-c');
    await appendRound(h.db.store, ts, 0, 30);
    let calls = 0;
    await consume({
      group: name,
      maxBatchSize: 25,
      handler: projector({
        name,
        pool: h.db.pool,
        apply: async (events, tx) => {
          await applyTestProjection(tx, name, events); // written, then rolled back by the failure
          if (++calls <= 3) throw new Error(`read model unavailable (call ${calls})`);
        },
      }),
    });
    await waitFor('120 events applied', async () => (await appliedCount(h.db.pool, name, 'cc')) >= 120);
    const report = await appliedReport(h.db.pool, name, 'cc');
    expect(calls).toBeGreaterThan(3);
    expect(report.total).toBe(120);
    expect(report.doubled).toBe(0);
    expect(report.outOfOrder).toEqual([]);
  });

  it('projector: a stopped consumer resumes from its checkpoint without loss or double application', async () => {
    const ts = tenants(6, 'cd');
    const name = uniqueName('projector-contract-d');
    const handler = projector({ name, pool: h.db.pool, apply: (events, tx) => applyTestProjection(tx, name, events) });
    await appendRound(h.db.store, ts, 0, 50);
    const first = await consume({ group: name, maxBatchSize: 10, handler });
    await waitFor('some events applied', async () => (await appliedCount(h.db.pool, name, 'cd')) >= 60);
    await first.stop();
    const atStop = await appliedCount(h.db.pool, name, 'cd');
    await appendRound(h.db.store, ts, 50, 50);
    await new Promise((r) => setTimeout(r, 300));
    expect(await appliedCount(h.db.pool, name, 'cd')).toBe(atStop); // stopped means stopped
    await consume({ group: name, maxBatchSize: 10, handler });
    await waitFor('600 events applied', async () => (await appliedCount(h.db.pool, name, 'cd')) >= 600);
    const report = await appliedReport(h.db.pool, name, 'cd');
    expect(report.total).toBe(600);
    expect(report.doubled).toBe(0);
    expect(report.outOfOrder).toEqual([]);
  });

  it('runner: at-least-once with retries; dead letter with the reason after N failures', async () => {
    const ts = tenants(3, 'ce');
    const name = uniqueName('runner-contract');
    await appendRound(h.db.store, ts, 0, 20);
    const performed = new Set<string>();
    const keys = new Set<string>();
    await consume({
      group: name,
      filter: { eventTypes: ['RecordIngested'] },
      handler: runner({
        name,
        bus: h.bus,
        maxAttempts: 3,
        backoff: { initialMs: 5, maxMs: 20 },
        concurrency: 2,
        handle: async (event, ctx) => {
          if (!event.tenantId.startsWith('ce')) return;
          keys.add(ctx.idempotencyKey);
          const seq = seqOf(event);
          if (seq % 10 === 0) throw new Error(`webhook answered 503 for seq ${seq}`);
          if (seq % 10 === 5) throw new PermanentFailure(`webhook answered 410 for seq ${seq}`);
          if (seq % 7 === 0 && ctx.attempt === 1) throw new Error('connection reset'); // succeeds on the retry
          performed.add(event.eventId);
        },
      }),
    });
    // 3 tenants x 20: seqs 10, 20 fail for good, 5, 15 are permanent: 12 dead letters, 48 performed.
    await waitFor('48 side effects performed', () => performed.size >= 48);
    await waitFor('12 dead letters', async () => (await h.deadLetters(name)).length >= 12);
    const dead = await h.deadLetters(name);
    expect(dead).toHaveLength(12);
    for (const d of dead) {
      if (d.attempts === 3) expect(d.reason).toMatch(/webhook answered 503 for seq [12]0$/);
      else {
        expect(d.attempts).toBe(1);
        expect(d.reason).toMatch(/webhook answered 410 for seq (5|15)$/);
      }
      expect(performed.has(d.eventId)).toBe(false);
    }
    expect(dead.filter((d) => d.attempts === 3)).toHaveLength(6);
    expect(keys.size).toBe(60);
    expect([...keys].every((k) => k.startsWith(`${name}:`))).toBe(true);
  });

  it('consumer filter: only matching events reach the handler', async () => {
    const ts = tenants(3, 'cf');
    const name = uniqueName('projector-contract-f');
    await appendRound(h.db.store, ts, 0, 15);
    const got: RecordedEvent[] = [];
    await consume({
      group: name,
      filter: { tenantId: 'cf001' },
      handler: async (batch) => {
        got.push(...batch.events);
      },
    });
    await waitFor('cf001 events', () => got.length >= 15);
    await new Promise((r) => setTimeout(r, 300));
    expect(got.every((e) => e.tenantId === 'cf001')).toBe(true);
    expect(got.map(seqOf)).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
  });
}
