/** Pure parts of the bus: the Kafka message mapping, the client-side filter, the runner's retry and acknowledgement logic. */
import { describe, expect, it } from 'vitest';
import {
  BUS_HEADERS,
  PermanentFailure,
  canonicalHash,
  defaultEventCodec,
  fromKafkaMessage,
  matchesFilter,
  runner,
  toKafkaMessage,
  uuidv7,
  type BusBatch,
  type DeadLetter,
  type RecordedEvent,
} from '@keel/shared-events';

const codec = defaultEventCodec();

function event(tenantId: string, seq: number, type = 'RecordIngested'): RecordedEvent {
  const payload = { seq };
  return {
    eventId: uuidv7(),
    type,
    schemaVersion: 2,
    tenantId,
    streamId: `record-${tenantId}-seq-all`,
    streamPosition: seq - 1,
    globalPosition: seq * 10 + tenantId.length,
    occurredAt: new Date('2025-01-01T00:00:00.000Z'),
    recordedAt: new Date('2025-01-01T00:00:00.001Z'),
    actor: { kind: 'system', id: 'unit' },
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    data: {
      source: 's',
      entityType: 'seq',
      externalId: String(seq),
      payload,
      receivedVia: 'api',
      contentHash: canonicalHash(payload),
    },
  };
}

function batchOf(events: RecordedEvent[], running = () => true): BusBatch {
  return { group: 'g', events, lane: 'log', heartbeat: async () => undefined, isRunning: running };
}

describe('Kafka message mapping', () => {
  it('keys by tenant, carries type, fingerprint, tenant and traceparent headers, and round-trips the event', () => {
    const e = event('acme', 3);
    const m = toKafkaMessage(e, codec);
    expect(m.key).toBe('acme');
    expect(m.headers).toEqual({
      [BUS_HEADERS.eventType]: 'RecordIngested',
      [BUS_HEADERS.fingerprint]: codec.fingerprintOf('RecordIngested', 2),
      [BUS_HEADERS.tenantId]: 'acme',
      [BUS_HEADERS.traceparent]: e.traceparent,
    });
    expect(fromKafkaMessage({ value: m.value as Buffer }, codec)).toEqual(e);
  });

  it('leaves the traceparent header out when the event has none, and refuses an empty message', () => {
    const { traceparent: _t, ...e } = event('acme', 1);
    expect(Object.keys(toKafkaMessage(e, codec).headers ?? {})).not.toContain(BUS_HEADERS.traceparent);
    expect(() => fromKafkaMessage({ value: null }, codec)).toThrow(/no value/);
  });

  it('filters by tenant, type and stream category like the store does', () => {
    const e = event('acme', 1);
    expect(matchesFilter(e, undefined)).toBe(true);
    expect(matchesFilter(e, { tenantId: 'acme', eventTypes: ['RecordIngested'], categories: ['record'] })).toBe(true);
    expect(matchesFilter(e, { tenantId: 'other' })).toBe(false);
    expect(matchesFilter(e, { eventTypes: ['TenantCreated'] })).toBe(false);
    expect(matchesFilter(e, { categories: ['run', 'webhook'] })).toBe(false);
  });
});

describe('runner handler', () => {
  const deadLetters: DeadLetter[] = [];
  const bus = { deadLetter: async (d: DeadLetter) => void deadLetters.push(d) };

  it('keeps each tenant in order while serving tenants concurrently', async () => {
    const order: string[] = [];
    const events = [event('a', 1), event('b', 1), event('a', 2), event('b', 2), event('a', 3)];
    const h = runner({
      name: 'runner-x',
      bus,
      concurrency: 2,
      handle: async (e) => {
        await new Promise((r) => setTimeout(r, e.tenantId === 'a' ? 5 : 1));
        order.push(`${e.tenantId}${(e.data as { externalId: string }).externalId}`);
      },
    });
    expect(await h(batchOf(events))).toEqual({ applied: 5 });
    expect(order.filter((x) => x.startsWith('a'))).toEqual(['a1', 'a2', 'a3']);
    expect(order.filter((x) => x.startsWith('b'))).toEqual(['b1', 'b2']);
    expect(order.indexOf('b1')).toBeLessThan(order.indexOf('a2')); // b did not wait for a
  });

  it('retries with the attempt number, then dead-letters with the last error', async () => {
    deadLetters.length = 0;
    const attempts: number[] = [];
    const h = runner({
      name: 'runner-y',
      bus,
      maxAttempts: 3,
      backoff: { initialMs: 1, maxMs: 2 },
      handle: async (_e, ctx) => {
        attempts.push(ctx.attempt);
        throw new Error(`timeout on attempt ${ctx.attempt}`);
      },
    });
    const e = event('a', 1);
    expect(await h(batchOf([e]))).toEqual({ applied: 1 });
    expect(attempts).toEqual([1, 2, 3]);
    expect(deadLetters).toEqual([{ group: 'runner-y', event: e, reason: 'timeout on attempt 3', attempts: 3 }]);
  });

  it('sends a PermanentFailure to the dead letter without retrying', async () => {
    deadLetters.length = 0;
    let calls = 0;
    const h = runner({
      name: 'runner-z',
      bus,
      handle: async () => {
        calls++;
        throw new PermanentFailure('410 Gone');
      },
    });
    await h(batchOf([event('a', 1)]));
    expect(calls).toBe(1);
    expect(deadLetters[0]).toMatchObject({ reason: '410 Gone', attempts: 1 });
  });

  it('acknowledges only the prefix that is done when the dead letter cannot be written', async () => {
    const failing = { deadLetter: async () => Promise.reject(new Error('dlq down')) };
    const h = runner({
      name: 'runner-w',
      bus: failing,
      maxAttempts: 1,
      handle: async (e) => {
        if ((e.data as { externalId: string }).externalId === '2') throw new Error('boom');
      },
    });
    expect(await h(batchOf([event('a', 1), event('a', 2), event('a', 3)]))).toEqual({ applied: 1 });
  });

  it('stops between events when the consumer stops, acknowledging what was done', async () => {
    let running = true;
    const h = runner({
      name: 'runner-v',
      bus,
      handle: async () => {
        running = false; // the consumer is asked to stop while the first event runs
      },
    });
    expect(await h(batchOf([event('a', 1), event('a', 2)], () => running))).toEqual({ applied: 1 });
  });

  it('acknowledges event types it does not handle without calling it', async () => {
    let calls = 0;
    const h = runner({ name: 'runner-u', bus, eventTypes: ['TenantCreated'], handle: async () => void calls++ });
    expect(await h(batchOf([event('a', 1), event('a', 2)]))).toEqual({ applied: 2 });
    expect(calls).toBe(0);
  });
});

describe('cachingDefaultPartitioner', async () => {
  const { cachingDefaultPartitioner, Partitioners } = await import('../src/bus/kafka/client.ts');
  const meta = (n: number) => Array.from({ length: n }, (_, partitionId) => ({ partitionId, partitionErrorCode: 0, leader: 0, replicas: [0], isr: [0] }));
  it('maps every key to the partition kafkajs DefaultPartitioner picks, across partition counts', () => {
    const reference = Partitioners.DefaultPartitioner();
    const cached = cachingDefaultPartitioner();
    for (const n of [12, 12, 7, 1, 24]) {
      for (let i = 0; i < 500; i++) {
        const key = i % 3 === 0 ? `0190${i.toString(16)}-tenant-é-${i}` : i % 3 === 1 ? Buffer.from(`k${i}`) : `k${i}`;
        const args = { topic: 't', partitionMetadata: meta(n), message: { key, value: null } };
        const want = reference(args);
        expect(cached(args)).toBe(want);
        expect(cached(args)).toBe(want); // from the cache
      }
    }
    // an explicit partition wins, as in kafkajs
    expect(cached({ topic: 't', partitionMetadata: meta(12), message: { key: 'x', partition: 5, value: null } })).toBe(5);
  });
});
