import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalHash,
  ConcurrencyError,
  StreamDeletedError,
  streamName,
  ValidationError,
  type AllFilter,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
  type StreamAppend,
  type SubscriptionHandler,
} from '@keel/shared-events';

/**
 * The EventStore contract: every adapter (PostgreSQL, EventStoreDB) runs this same suite against
 * its real server. It talks only through the port, so it holds no SQL and no client specifics.
 *
 * What it expects of `makeStore`: a store built with the real schema registry
 * (`createSchemaRegistry()`), since validation, schemaVersion defaults and upcasting are part of
 * the contract. Stores may share one server and one global log across tests and runs: every test
 * writes under fresh random tenant ids and looks at the global log through a tenant filter.
 *
 * Reads of the global log are gap-safe, so an adapter may show a just-committed event a moment
 * later (e.g. while an unrelated transaction is open): tests that read the global log wait for
 * what they expect instead of assuming it is there at once.
 */
export interface StoreContractOptions {
  /**
   * appendBatch is atomic across streams even when a stream fails its expected revision
   * (PostgreSQL: yes; EventStoreDB: no, it has no multi-stream transaction). Default true.
   */
  atomicBatch?: boolean;
}

export function eventStoreContract(
  name: string,
  makeStore: () => Promise<{ store: EventStore; cleanup(): Promise<void> }>,
  options: StoreContractOptions = {},
): void {
  describe(`EventStore contract: ${name}`, () => {
    let store: EventStore;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      ({ store, cleanup } = await makeStore());
    });
    afterAll(async () => {
      await cleanup?.();
    });

    describe('appendToStream and readStream', () => {
      it('appends to a new stream and reads the events back with everything recorded', async () => {
        const t = tenant();
        const stream = tenantStream(t);
        const id = randomUUID();
        const occurredAt = new Date('2024-05-01T10:00:00.123Z');
        const result = await store.appendToStream(
          stream,
          [
            {
              ...tenantCreated(t, 'Acme'),
              eventId: id,
              occurredAt,
              correlationId: 'corr-1',
              causationId: 'cause-1',
              traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
            },
            { type: 'TenantSuspended', tenantId: t, actor, data: { reason: 'unpaid' } },
          ],
          { expectedRevision: 'no_stream' },
        );
        expect(result.nextExpectedRevision).toBe(1);
        expect(result.events.map((e) => e.streamPosition)).toEqual([0, 1]);
        expect(result.events[0]!.eventId).toBe(id);
        expect(result.events[1]!.eventId).toMatch(UUID_V7);
        expect(result.events[1]!.globalPosition).toBeGreaterThan(result.events[0]!.globalPosition);
        expect(result.globalPosition).toBe(result.events[1]!.globalPosition);

        const read = await store.readStream(stream);
        expect(read).toHaveLength(2);
        const [first, second] = read as [RecordedEvent, RecordedEvent];
        expect(first).toMatchObject({
          eventId: id,
          type: 'TenantCreated',
          schemaVersion: 1,
          tenantId: t,
          streamId: stream,
          streamPosition: 0,
          globalPosition: result.events[0]!.globalPosition,
          actor,
          correlationId: 'corr-1',
          causationId: 'cause-1',
          traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
          data: { name: 'Acme' },
        });
        expect(first.occurredAt.toISOString()).toBe(occurredAt.toISOString());
        expect(first.recordedAt).toBeInstanceOf(Date);
        expect(first.recordedAt.getTime()).toBe(result.events[0]!.recordedAt.getTime());
        expect(second).toMatchObject({ type: 'TenantSuspended', streamPosition: 1, data: { reason: 'unpaid' } });
        expect(second.correlationId).toBeUndefined();
      });

      it('reads a stream that does not exist as empty', async () => {
        expect(await store.readStream(tenantStream(tenant()))).toEqual([]);
      });

      it('reads ranges: from/to revision, maxCount, backwards, upTo a recorded time', async () => {
        const t = tenant();
        const stream = recordStream(t, 'range');
        await store.appendToStream(stream, [0, 1, 2, 3, 4].map((i) => recordIngested(t, 'range', { i })));
        const revisions = (events: RecordedEvent[]) => events.map((e) => e.streamPosition);
        expect(revisions(await store.readStream(stream, { fromRevision: 2 }))).toEqual([2, 3, 4]);
        expect(revisions(await store.readStream(stream, { fromRevision: 1, toRevision: 3 }))).toEqual([1, 2, 3]);
        expect(revisions(await store.readStream(stream, { maxCount: 2 }))).toEqual([0, 1]);
        expect(revisions(await store.readStream(stream, { direction: 'backwards' }))).toEqual([4, 3, 2, 1, 0]);
        expect(revisions(await store.readStream(stream, { direction: 'backwards', maxCount: 2 }))).toEqual([4, 3]);
        expect(revisions(await store.readStream(stream, { direction: 'backwards', toRevision: 3, maxCount: 2 }))).toEqual([3, 2]);

        // upTo: state at a point in time. A later event recorded after a pause is left out.
        const [cut] = await store.readStream(stream, { fromRevision: 4 });
        await sleep(25);
        await store.appendToStream(stream, [recordIngested(t, 'range', { i: 5 })]);
        const upTo = await store.readStream(stream, { upTo: cut!.recordedAt });
        expect(revisions(upTo)).toEqual([0, 1, 2, 3, 4]);
        expect(revisions(await store.readStream(stream))).toEqual([0, 1, 2, 3, 4, 5]);
      });
    });

    describe('expected revision', () => {
      it("'no_stream' refuses an existing stream", async () => {
        const t = tenant();
        const stream = tenantStream(t);
        await store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 'no_stream' });
        const err = await rejection(store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 'no_stream' }));
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect(err).toMatchObject({ code: 'CONCURRENCY_CONFLICT', streamId: stream, expected: 'no_stream', actual: 0 });
        expect(await store.readStream(stream)).toHaveLength(1);
      });

      it("'stream_exists' refuses a missing stream", async () => {
        const t = tenant();
        const stream = tenantStream(t);
        const err = await rejection(store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 'stream_exists' }));
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect(err).toMatchObject({ streamId: stream, expected: 'stream_exists', actual: 'no_stream' });
        expect(await store.readStream(stream)).toEqual([]);
        await store.appendToStream(stream, [tenantCreated(t)]);
        const ok = await store.appendToStream(stream, [suspended(t)], { expectedRevision: 'stream_exists' });
        expect(ok.nextExpectedRevision).toBe(1);
      });

      it('an exact revision must be the revision of the last event', async () => {
        const t = tenant();
        const stream = tenantStream(t);
        const missing = await rejection(store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 0 }));
        expect(missing).toBeInstanceOf(ConcurrencyError);
        expect(missing).toMatchObject({ expected: '0', actual: 'no_stream' });

        await store.appendToStream(stream, [tenantCreated(t), suspended(t)], { expectedRevision: 'no_stream' });
        for (const wrong of [0, 2, 7]) {
          const err = await rejection(store.appendToStream(stream, [reinstated(t)], { expectedRevision: wrong }));
          expect(err).toBeInstanceOf(ConcurrencyError);
          expect(err).toMatchObject({ streamId: stream, expected: String(wrong), actual: 1 });
        }
        const ok = await store.appendToStream(stream, [reinstated(t)], { expectedRevision: 1 });
        expect(ok.nextExpectedRevision).toBe(2);
        expect((await store.readStream(stream)).map((e) => e.type)).toEqual(['TenantCreated', 'TenantSuspended', 'TenantReinstated']);
      });

      it("'any' (the default) appends whatever the stream's state", async () => {
        const t = tenant();
        const stream = tenantStream(t);
        expect((await store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 'any' })).nextExpectedRevision).toBe(0);
        expect((await store.appendToStream(stream, [suspended(t)])).nextExpectedRevision).toBe(1);
      });

      it('of concurrent appends expecting the same revision exactly one wins', async () => {
        const t = tenant();
        const stream = tenantStream(t);
        await store.appendToStream(stream, [tenantCreated(t)], { expectedRevision: 'no_stream' });
        const results = await Promise.allSettled(
          Array.from({ length: 6 }, () => store.appendToStream(stream, [suspended(t)], { expectedRevision: 0 })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(5);
        for (const l of lost) expect(l.reason).toBeInstanceOf(ConcurrencyError);
        expect(await store.readStream(stream)).toHaveLength(2);
      });

      it("concurrent 'any' appends to one stream all land, with consecutive revisions", async () => {
        const t = tenant();
        const stream = recordStream(t, 'busy');
        await Promise.all(Array.from({ length: 8 }, (_, i) => store.appendToStream(stream, [recordIngested(t, 'busy', { i })])));
        const events = await store.readStream(stream);
        expect(events.map((e) => e.streamPosition)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
        expect(new Set(events.map((e) => (e.data as { payload: { i: number } }).payload.i)).size).toBe(8);
      });
    });

    describe('idempotency on eventId', () => {
      it('appending the same events again stores nothing and answers as the first time', async () => {
        const t = tenant();
        const stream = recordStream(t, 'idem');
        const events = [withId(recordIngested(t, 'idem', { v: 1 })), withId(recordIngested(t, 'idem', { v: 2 }))];
        const first = await store.appendToStream(stream, events, { expectedRevision: 'no_stream' });
        const again = await store.appendToStream(stream, events, { expectedRevision: 'no_stream' });
        expect(again.nextExpectedRevision).toBe(first.nextExpectedRevision);
        expect(again.globalPosition).toBe(first.globalPosition);
        expect(again.events.map((e) => [e.eventId, e.streamPosition, e.globalPosition])).toEqual(
          first.events.map((e) => [e.eventId, e.streamPosition, e.globalPosition]),
        );
        expect(await store.readStream(stream)).toHaveLength(2);
      });

      it('answers as the first time even when the expected revision no longer matches', async () => {
        const t = tenant();
        const stream = tenantStream(t);
        const created = withId(tenantCreated(t));
        const first = await store.appendToStream(stream, [created], { expectedRevision: 'no_stream' });
        await store.appendToStream(stream, [suspended(t)], { expectedRevision: 0 });
        const retry = await store.appendToStream(stream, [created], { expectedRevision: 'no_stream' });
        expect(retry.nextExpectedRevision).toBe(0);
        expect(retry.globalPosition).toBe(first.globalPosition);
        expect(retry.events[0]!.eventId).toBe(created.eventId);
        expect(await store.readStream(stream)).toHaveLength(2);
      });

      it('a retried batch stores nothing and answers with the first revisions', async () => {
        const t = tenant();
        const batch: StreamAppend[] = ['a', 'b', 'c'].map((id) => ({
          streamId: recordStream(t, id),
          events: [withId(recordIngested(t, id, { id })), withId(recordIngested(t, id, { id, n: 2 }))],
          expectedRevision: 'no_stream',
        }));
        const first = await store.appendBatch(batch);
        expect(first.appended).toBe(6);
        const again = await store.appendBatch(batch);
        expect(again.appended).toBe(0);
        expect(again.streams).toEqual(first.streams);
        expect(again.globalPosition).toBe(first.globalPosition);
        for (const s of batch) expect(await store.readStream(s.streamId)).toHaveLength(2);
      });
    });

    describe('appendBatch', () => {
      it('appends to many streams in one call, answering per stream in input order', async () => {
        const t = tenant();
        const existing = recordStream(t, 'existing');
        await store.appendToStream(existing, [recordIngested(t, 'existing', { n: 0 })]);
        const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
        const batch: StreamAppend[] = [
          { streamId: existing, events: [recordIngested(t, 'existing', { n: 1 })], expectedRevision: 0 },
          ...ids.map((id) => ({
            streamId: recordStream(t, id),
            events: [recordIngested(t, id, { id }), recordIngested(t, id, { id, again: true })],
            expectedRevision: 'no_stream' as const,
          })),
        ];
        const result = await store.appendBatch(batch);
        expect(result.appended).toBe(41);
        expect(result.streams).toEqual([
          { streamId: existing, nextExpectedRevision: 1 },
          ...ids.map((id) => ({ streamId: recordStream(t, id), nextExpectedRevision: 1 })),
        ]);
        const all = await allOf(store, { tenantId: t }, 42);
        expect(all).toHaveLength(42);
        expect(Math.max(...all.map((e) => e.globalPosition))).toBe(result.globalPosition);
        expect((await store.readStream(recordStream(t, 'c7'))).map((e) => e.streamPosition)).toEqual([0, 1]);
      });

      it('stores nothing when one event in the middle is invalid', async () => {
        const t = tenant();
        const bad = { ...recordIngested(t, 'm2', {}), data: { source: 'crm', entityType: 'customer' } } as NewEvent;
        const batch: StreamAppend[] = [
          { streamId: recordStream(t, 'm1'), events: [recordIngested(t, 'm1', { ok: 1 })] },
          { streamId: recordStream(t, 'm2'), events: [recordIngested(t, 'm2', { ok: 2 }), bad, recordIngested(t, 'm2', { ok: 3 })] },
          { streamId: recordStream(t, 'm3'), events: [recordIngested(t, 'm3', { ok: 4 })] },
        ];
        const err = await rejection(store.appendBatch(batch));
        expect(err).toBeInstanceOf(ValidationError);
        expect((err as ValidationError).field).toBe('data.externalId');
        for (const s of batch) expect(await store.readStream(s.streamId)).toEqual([]);
        await expectNoEventsOf(store, t);
      });

      it('refuses a batch with a stream at the wrong revision', async () => {
        const t = tenant();
        const taken = recordStream(t, 'taken');
        await store.appendToStream(taken, [recordIngested(t, 'taken', {})]);
        const free = recordStream(t, 'free');
        for (const expectedRevision of ['no_stream', 3] as const) {
          const err = await rejection(
            store.appendBatch([
              { streamId: taken, events: [recordIngested(t, 'taken', { again: true })], expectedRevision },
              { streamId: free, events: [recordIngested(t, 'free', {})], expectedRevision: 'any' },
            ]),
          );
          expect(err).toBeInstanceOf(ConcurrencyError);
          expect(err).toMatchObject({ streamId: taken, expected: String(expectedRevision), actual: 0 });
        }
        const missing = await rejection(
          store.appendBatch([{ streamId: recordStream(t, 'nowhere'), events: [recordIngested(t, 'nowhere', {})], expectedRevision: 'stream_exists' }]),
        );
        expect(missing).toMatchObject({ expected: 'stream_exists', actual: 'no_stream' });
        expect(await store.readStream(taken)).toHaveLength(1);
        if (options.atomicBatch !== false) {
          // all or nothing: the stream that was fine got nothing either
          expect(await store.readStream(free)).toEqual([]);
        }
      });
    });

    describe('schemas', () => {
      it('refuses invalid data with a ValidationError naming the field, and stores nothing', async () => {
        const t = tenant();
        const stream = tenantStream(t);
        const wrongType = await rejection(store.appendToStream(stream, [{ ...tenantCreated(t), data: { name: 42 } }]));
        expect(wrongType).toBeInstanceOf(ValidationError);
        expect(wrongType).toMatchObject({ code: 'VALIDATION_FAILED', field: 'data.name' });
        const missing = await rejection(store.appendToStream(stream, [{ ...tenantCreated(t), data: {} }]));
        expect(missing).toMatchObject({ field: 'data.name' });
        const nested = await rejection(
          store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), data: { ...recordIngested(t, 'x', {}).data, receivedVia: 'fax' } }]),
        );
        expect(nested).toMatchObject({ field: 'data.receivedVia' });
        const unknownType = await rejection(store.appendToStream(stream, [{ ...tenantCreated(t), type: 'TenantTeleported' }]));
        expect(unknownType).toBeInstanceOf(ValidationError);
        expect(unknownType).toMatchObject({ field: 'type' });
        expect(await store.readStream(stream)).toEqual([]);
        expect(await store.readStream(recordStream(t, 'x'))).toEqual([]);
      });

      it('fills schemaVersion with the newest version of the type', async () => {
        const t = tenant();
        const r = await store.appendToStream(recordStream(t, 'v'), [recordIngested(t, 'v', { a: 1 })]);
        expect(r.events[0]!.schemaVersion).toBe(2);
        const [read] = await store.readStream(recordStream(t, 'v'));
        expect(read!.schemaVersion).toBe(2);
        const tc = await store.appendToStream(tenantStream(t), [tenantCreated(t)]);
        expect(tc.events[0]!.schemaVersion).toBe(1);
      });

      it('validates an old version against its own schema and upcasts it on every read', async () => {
        const t = tenant();
        const stream = recordStream(t, 'old');
        const payload = { b: [1, 2], a: 'x' };
        const v1: NewEvent = {
          type: 'RecordIngested',
          schemaVersion: 1,
          tenantId: t,
          actor,
          data: { source: 'legacy', entityType: 'customer', externalId: 'old', payload },
        };
        const tooNew = await rejection(store.appendToStream(stream, [{ ...v1, data: { ...v1.data, receivedVia: 'api' } }]));
        expect(tooNew).toBeInstanceOf(ValidationError);
        expect(tooNew).toMatchObject({ field: 'data.receivedVia' });
        await store.appendToStream(stream, [v1]);
        const expected = {
          type: 'RecordIngested',
          schemaVersion: 2,
          data: { source: 'legacy', entityType: 'customer', externalId: 'old', payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
        };
        expect((await store.readStream(stream))[0]).toMatchObject(expected);
        const [fromAll] = await allOf(store, { tenantId: t }, 1);
        expect(fromAll).toMatchObject(expected);
      });
    });

    describe('readAll', () => {
      it('pages through the global log after a position, in order, without repeats', async () => {
        const t = tenant();
        const appended: string[] = [];
        for (let i = 0; i < 7; i++) {
          const r = await store.appendToStream(recordStream(t, `p${i % 3}`), [recordIngested(t, `p${i % 3}`, { i })]);
          appended.push(r.events[0]!.eventId);
        }
        await allOf(store, { tenantId: t }, 7); // wait until all are visible to readers
        const seen: RecordedEvent[] = [];
        let after = 0;
        for (let guard = 0; guard < 10_000; guard++) {
          const page = await store.readAll({ after, maxCount: 2, filter: { tenantId: t } });
          expect(page.events.length).toBeLessThanOrEqual(2);
          for (const e of page.events) expect(e.globalPosition).toBeGreaterThan(after);
          expect(page.position).toBeGreaterThanOrEqual(after);
          seen.push(...page.events);
          after = page.position;
          if (page.isEnd) break;
        }
        expect(seen.map((e) => e.eventId)).toEqual(appended);
        const positions = seen.map((e) => e.globalPosition);
        expect([...positions].sort((a, b) => a - b)).toEqual(positions);

        // unfiltered pages hold the same events in the same order, among others
        const first = seen[0]!.globalPosition;
        const unfiltered: RecordedEvent[] = [];
        let from = first - 1;
        while (unfiltered.filter((e) => e.tenantId === t).length < 7) {
          const page = await store.readAll({ after: from, maxCount: 3 });
          unfiltered.push(...page.events);
          from = page.position;
          if (page.isEnd && page.events.length === 0) await sleep(20);
        }
        expect(unfiltered.filter((e) => e.tenantId === t).map((e) => e.eventId)).toEqual(appended);
        const all = unfiltered.map((e) => e.globalPosition);
        expect(new Set(all).size).toBe(all.length);
        expect([...all].sort((a, b) => a - b)).toEqual(all);
      });

      it('filters by tenant, event types and stream categories', async () => {
        const t = tenant();
        const other = tenant();
        await store.appendToStream(tenantStream(t), [tenantCreated(t), suspended(t)]);
        await store.appendToStream(recordStream(t, 'f1'), [recordIngested(t, 'f1', {})]);
        await store.appendToStream(tenantStream(other), [tenantCreated(other)]);
        await store.appendToStream(recordStream(other, 'f2'), [recordIngested(other, 'f2', {})]);

        const mine = await allOf(store, { tenantId: t }, 3);
        expect(mine.map((e) => e.type)).toEqual(['TenantCreated', 'TenantSuspended', 'RecordIngested']);
        expect(mine.every((e) => e.tenantId === t)).toBe(true);

        const created = await allOf(store, { tenantId: t, eventTypes: ['TenantCreated', 'RecordIngested'] }, 2);
        expect(created.map((e) => e.type)).toEqual(['TenantCreated', 'RecordIngested']);

        const records = await allOf(store, { tenantId: t, categories: ['record'] }, 1);
        expect(records.map((e) => e.streamId)).toEqual([recordStream(t, 'f1')]);

        const bothTenants = await eventually(
          () => allOf(store, { eventTypes: ['TenantCreated'], categories: ['tenant'] }, 0),
          (events) => events.filter((e) => e.tenantId === t || e.tenantId === other).length >= 2,
        );
        const ours = bothTenants.filter((e) => e.tenantId === t || e.tenantId === other);
        expect(ours.map((e) => e.tenantId).sort()).toEqual([t, other].sort());
        expect(bothTenants.every((e) => e.type === 'TenantCreated' && e.streamId.startsWith('tenant-'))).toBe(true);
      });

      it('headPosition reaches the position of the last append', async () => {
        const t = tenant();
        const r = await store.appendToStream(tenantStream(t), [tenantCreated(t)]);
        await eventually(() => store.headPosition(), (head) => head >= r.globalPosition);
        expect(await store.headPosition()).toBeGreaterThanOrEqual(r.globalPosition);
      });
    });

    describe('subscribe', () => {
      it('catches up, goes live, and resumes after its checkpoint', async () => {
        const t = tenant();
        const stream = recordStream(t, 'sub');
        await store.appendToStream(stream, [0, 1, 2].map((i) => recordIngested(t, 'sub', { i })));

        const received: { events: RecordedEvent[]; position: number; isLive: boolean }[] = [];
        const handler: SubscriptionHandler = async (events, ctx) => {
          received.push({ events, ...ctx });
        };
        const sub = store.subscribe({ filter: { tenantId: t }, batchSize: 2, pollIntervalMs: 20 }, handler);
        const payloadsOf = () => received.flatMap((b) => b.events.map((e) => (e.data as { payload: { i: number } }).payload.i));
        await eventually(async () => payloadsOf(), (p) => p.length >= 3);
        expect(payloadsOf()).toEqual([0, 1, 2]);

        await store.appendToStream(stream, [recordIngested(t, 'sub', { i: 3 }), recordIngested(t, 'sub', { i: 4 })]);
        await eventually(async () => payloadsOf(), (p) => p.length >= 5);
        expect(payloadsOf()).toEqual([0, 1, 2, 3, 4]);
        expect(received.filter((b) => b.events.some((e) => (e.data as { payload: { i: number } }).payload.i >= 3)).every((b) => b.isLive)).toBe(true);
        await sub.stop();
        await sub.done;

        const checkpoint = received[received.length - 1]!.position;
        expect(checkpoint).toBeGreaterThanOrEqual(received[received.length - 1]!.events.at(-1)!.globalPosition);
        await store.appendToStream(stream, [recordIngested(t, 'sub', { i: 5 })]);
        expect(payloadsOf()).toEqual([0, 1, 2, 3, 4]); // stopped: nothing more delivered

        const resumed: RecordedEvent[] = [];
        const sub2 = store.subscribe({ after: checkpoint, filter: { tenantId: t }, pollIntervalMs: 20 }, async (events) => {
          resumed.push(...events);
        });
        await eventually(async () => resumed.length, (n) => n >= 1);
        await sleep(100);
        await sub2.stop();
        expect(resumed.map((e) => (e.data as { payload: { i: number } }).payload.i)).toEqual([5]);
      });

      it('delivers events in global order with increasing positions', async () => {
        const t = tenant();
        const got: RecordedEvent[] = [];
        const sub = store.subscribe({ filter: { tenantId: t }, pollIntervalMs: 20 }, async (events) => {
          got.push(...events);
        });
        const writes = Array.from({ length: 5 }, (_, w) =>
          (async () => {
            for (let i = 0; i < 6; i++) await store.appendToStream(recordStream(t, `w${w}`), [recordIngested(t, `w${w}`, { w, i })]);
          })(),
        );
        await Promise.all(writes);
        await eventually(async () => got.length, (n) => n >= 30);
        await sleep(100);
        await sub.stop();
        expect(got).toHaveLength(30);
        const positions = got.map((e) => e.globalPosition);
        expect([...positions].sort((a, b) => a - b)).toEqual(positions);
        expect(new Set(positions).size).toBe(30);
        for (let w = 0; w < 5; w++) {
          const mine = got.filter((e) => e.streamId === recordStream(t, `w${w}`)).map((e) => e.streamPosition);
          expect(mine).toEqual([0, 1, 2, 3, 4, 5]);
        }
      });

      it('ends with the error when the handler fails', async () => {
        const t = tenant();
        await store.appendToStream(tenantStream(t), [tenantCreated(t)]);
        const sub = store.subscribe({ filter: { tenantId: t }, pollIntervalMs: 20 }, async () => {
          throw new Error('projection broke');
        });
        await expect(sub.done).rejects.toThrow('projection broke');
        await sub.stop();
      });
    });

    describe('truncate and delete', () => {
      it('truncateBefore hides earlier events; revisions go on', async () => {
        const t = tenant();
        const stream = recordStream(t, 'trunc');
        await store.appendToStream(stream, [0, 1, 2, 3, 4].map((i) => recordIngested(t, 'trunc', { i })));
        await store.truncateBefore(stream, 3);
        expect((await store.readStream(stream)).map((e) => e.streamPosition)).toEqual([3, 4]);
        expect((await store.readStream(stream, { fromRevision: 1 })).map((e) => e.streamPosition)).toEqual([3, 4]);
        expect(await store.getStreamMetadata(stream)).toMatchObject({ streamId: stream, revision: 4, truncateBefore: 3, deleted: 'no' });
        const r = await store.appendToStream(stream, [recordIngested(t, 'trunc', { i: 5 })], { expectedRevision: 4 });
        expect(r.nextExpectedRevision).toBe(5);
        expect((await store.readStream(stream)).map((e) => e.streamPosition)).toEqual([3, 4, 5]);
      });

      it('a soft-deleted stream reads as empty, and appending again continues its revisions', async () => {
        const t = tenant();
        const stream = recordStream(t, 'soft');
        await store.appendToStream(stream, [0, 1, 2].map((i) => recordIngested(t, 'soft', { i })));
        await store.deleteStream(stream);
        expect(await store.readStream(stream)).toEqual([]);
        expect(await store.getStreamMetadata(stream)).toMatchObject({ deleted: 'soft' });

        const r = await store.appendToStream(stream, [recordIngested(t, 'soft', { i: 3 })]);
        expect(r.nextExpectedRevision).toBe(3);
        const events = await store.readStream(stream);
        expect(events.map((e) => e.streamPosition)).toEqual([3]);
        expect(await store.getStreamMetadata(stream)).toMatchObject({ revision: 3, deleted: 'no' });
      });

      it('deleteStream honours its expected revision', async () => {
        const t = tenant();
        const stream = recordStream(t, 'guarded');
        await store.appendToStream(stream, [recordIngested(t, 'guarded', {}), recordIngested(t, 'guarded', { n: 2 })]);
        const err = await rejection(store.deleteStream(stream, { expectedRevision: 0 }));
        expect(err).toBeInstanceOf(ConcurrencyError);
        expect(await store.readStream(stream)).toHaveLength(2);
        await store.deleteStream(stream, { expectedRevision: 1 });
        expect(await store.readStream(stream)).toEqual([]);
      });

      it('a tombstoned stream can never be read or written again', async () => {
        const t = tenant();
        const stream = recordStream(t, 'gone');
        await store.appendToStream(stream, [recordIngested(t, 'gone', {})]);
        await store.deleteStream(stream, { hard: true });
        expect(await rejection(store.readStream(stream))).toBeInstanceOf(StreamDeletedError);
        for (const expectedRevision of ['any', 'no_stream', 0] as const) {
          const err = await rejection(store.appendToStream(stream, [recordIngested(t, 'gone', {})], { expectedRevision }));
          expect(err).toBeInstanceOf(StreamDeletedError);
          expect(err).toMatchObject({ code: 'STREAM_DELETED', streamId: stream });
        }
        const other = recordStream(t, 'alive');
        const batchErr = await rejection(
          store.appendBatch([
            { streamId: other, events: [recordIngested(t, 'alive', {})] },
            { streamId: stream, events: [recordIngested(t, 'gone', {})] },
          ]),
        );
        expect(batchErr).toBeInstanceOf(StreamDeletedError);
        if (options.atomicBatch !== false) expect(await store.readStream(other)).toEqual([]);
        expect(await rejection(store.deleteStream(stream))).toBeInstanceOf(StreamDeletedError);
        expect(await rejection(store.deleteStream(stream, { hard: true }))).toBeInstanceOf(StreamDeletedError);
        expect(await store.getStreamMetadata(stream)).toMatchObject({ streamId: stream, deleted: 'tombstone' });
      });

      it('getStreamMetadata of a stream that does not exist', async () => {
        const t = tenant();
        const stream = recordStream(t, 'never');
        expect(await store.getStreamMetadata(stream)).toMatchObject({ streamId: stream, revision: -1, deleted: 'no' });
      });
    });
  });
}

// ------------------------------------------------------------------------------------ helpers

const actor = { kind: 'system', id: 'store-contract' } as const;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

function tenant(): string {
  return randomUUID();
}

function tenantStream(t: string): string {
  return streamName('tenant', t, t);
}

function recordStream(t: string, externalId: string): string {
  return streamName('record', t, `customer-${externalId}`);
}

function tenantCreated(t: string, name = 'Acme Corp'): NewEvent {
  return { type: 'TenantCreated', tenantId: t, actor, data: { name } };
}

function suspended(t: string): NewEvent {
  return { type: 'TenantSuspended', tenantId: t, actor, data: { reason: 'unpaid invoice' } };
}

function reinstated(t: string): NewEvent {
  return { type: 'TenantReinstated', tenantId: t, actor, data: {} };
}

function recordIngested(t: string, externalId: string, payload: Record<string, unknown>): NewEvent {
  return {
    type: 'RecordIngested',
    tenantId: t,
    actor: { kind: 'apiKey', id: 'key_contract' },
    data: { source: 'crm', entityType: 'customer', externalId, payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
  };
}

function withId(e: NewEvent): NewEvent & { eventId: string } {
  return { ...e, eventId: randomUUID() };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds (readers of the global log may lag a committed append briefly). */
async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await sleep(20);
  }
}

/** Every event of the global log that matches `filter`, once at least `atLeast` are visible. */
async function allOf(store: EventStore, filter: AllFilter, atLeast: number): Promise<RecordedEvent[]> {
  return eventually(
    async () => {
      const out: RecordedEvent[] = [];
      let after = 0;
      for (;;) {
        const page = await store.readAll({ after, maxCount: 1000, filter });
        out.push(...page.events);
        after = page.position;
        if (page.isEnd) return out;
      }
    },
    (events) => events.length >= atLeast,
  );
}

/**
 * No event of tenant `t` is in the global log. A marker appended afterwards, once visible, shows
 * that every earlier commit is visible too (the log is gap-safe), so absence is not just lag.
 */
async function expectNoEventsOf(store: EventStore, t: string): Promise<void> {
  const marker = tenant();
  await store.appendToStream(tenantStream(marker), [tenantCreated(marker)]);
  await allOf(store, { tenantId: marker }, 1);
  expect(await allOf(store, { tenantId: t }, 0)).toEqual([]);
}
