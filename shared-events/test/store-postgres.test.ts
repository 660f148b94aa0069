import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalHash,
  ConcurrencyError,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  runMigrations,
  storeMigrations,
  StreamDeletedError,
  streamName,
  UnavailableError,
  ValidationError,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
} from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';
import { eventStoreContract } from './store-contract.ts';

const registry = createSchemaRegistry();

async function migratedDatabase(prefix: string): Promise<string> {
  const url = await freshDatabase(prefix);
  await runMigrations(url, [storeMigrations]);
  return url;
}

eventStoreContract('PostgreSQL', async () => {
  const store = getPostgreSQLEventStore({ connectionString: await migratedDatabase('store'), registry });
  return { store, cleanup: () => store.close() };
});

const actor = { kind: 'system', id: 'store-postgres-test' } as const;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function recordStream(t: string, id: string): string {
  return streamName('record', t, `customer-${id}`);
}

function recordIngested(t: string, externalId: string, payload: Record<string, unknown>): NewEvent {
  return {
    type: 'RecordIngested',
    tenantId: t,
    actor,
    data: { source: 'crm', entityType: 'customer', externalId, payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
  };
}

async function eventually<T>(read: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

/**
 * Opens a raw transaction that appends one RecordIngested event through keel_append (exactly
 * what the store does) and stays open until `finish` is called: the tool for commits out of order.
 */
async function openAppend(url: string, t: string, externalId: string, payload: Record<string, unknown>) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('begin');
  const e = recordIngested(t, externalId, payload);
  const eventId = randomUUID();
  const res = await client.query<{ first_position: string }>(
    `select first_position from keel_append($1::text[], $2::int8[], $3::int4[], $4::int4[], $5::text[], $6::uuid[],
       $7::text[], $8::int4[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[],
       $15::text[], $16::text[])`,
    [
      [recordStream(t, externalId)],
      [-2],
      [1],
      [0],
      [recordStream(t, externalId)],
      [eventId],
      ['RecordIngested'],
      [2],
      [t],
      [new Date().toISOString()],
      ['system'],
      ['raw'],
      [null],
      [null],
      [null],
      [JSON.stringify(e.data)],
    ],
  );
  return {
    eventId,
    position: Number(res.rows[0]!.first_position),
    async finish(how: 'commit' | 'rollback') {
      await client.query(how);
      await client.end();
    },
  };
}

describe('PostgreSQL event store', () => {
  let url: string;
  let store: EventStore;
  let admin: pg.Pool;

  beforeAll(async () => {
    url = await migratedDatabase('storepg');
    store = getPostgreSQLEventStore({ connectionString: url, registry });
    admin = new pg.Pool({ connectionString: url, max: 2 });
    // pool.end() resolves before its sockets are closed; the database drop at the end of the
    // file may still reach one of them
    admin.on('error', () => undefined);
  });
  afterAll(async () => {
    await store?.close();
    await admin?.end();
  });

  describe('gap-safe global log', () => {
    it('never skips an event whose transaction commits after a later position became visible', async () => {
      const t = randomUUID();
      const delivered: RecordedEvent[] = [];
      const sub = store.subscribe({ filter: { tenantId: t }, pollIntervalMs: 5 }, async (events) => {
        delivered.push(...events);
      });

      const held = await openAppend(url, t, 'early', { n: 1 }); // lower position, not committed
      const later = await store.appendToStream(recordStream(t, 'late'), [recordIngested(t, 'late', { n: 2 })]);
      expect(later.globalPosition).toBeGreaterThan(held.position);

      // The trap is real: by position, the later event is committed and visible, the earlier one not.
      const naive = await admin.query<{ global_position: string }>(
        'select global_position from keel_events where global_position >= $1 order by global_position',
        [held.position],
      );
      expect(naive.rows.map((r) => Number(r.global_position))).toEqual([later.globalPosition]);

      // A gap-safe reader sees neither yet, and its head stays below the open transaction.
      const page = await store.readAll({ after: held.position - 1 });
      expect(page.events.map((e) => e.globalPosition)).not.toContain(later.globalPosition);
      expect(page.isEnd).toBe(true);
      expect(page.position).toBeLessThan(held.position);
      expect((await store.readAll({ filter: { tenantId: t } })).events).toEqual([]);
      expect(await store.headPosition()).toBeLessThan(held.position);
      await sleep(150);
      expect(delivered).toEqual([]);

      await held.finish('commit');
      await eventually(() => delivered.length, (n) => n >= 2);
      await sub.stop();
      expect(delivered.map((e) => e.globalPosition)).toEqual([held.position, later.globalPosition]);
      expect(delivered[0]!.eventId).toBe(held.eventId);
      const all = await store.readAll({ after: held.position - 1 });
      expect(all.events.map((e) => e.globalPosition)).toEqual([held.position, later.globalPosition]);
    });

    it('under concurrent writers committing and rolling back out of order, readers miss nothing', async () => {
      const t = randomUUID();
      const viaSubscription: RecordedEvent[] = [];
      const sub = store.subscribe({ filter: { tenantId: t }, batchSize: 7, pollIntervalMs: 5 }, async (events) => {
        viaSubscription.push(...events);
      });
      // A second reader pages the unfiltered log with small pages and a single-number checkpoint.
      const start = await store.headPosition();
      const viaReadAll: RecordedEvent[] = [];
      let readerDone = false;
      const reader = (async () => {
        let after = start;
        while (!readerDone) {
          const page = await store.readAll({ after, maxCount: 5 });
          viaReadAll.push(...page.events.filter((e) => e.tenantId === t));
          after = page.position;
          if (page.isEnd) await sleep(2);
        }
        for (;;) {
          const page = await store.readAll({ after, maxCount: 100 });
          viaReadAll.push(...page.events.filter((e) => e.tenantId === t));
          after = page.position;
          if (page.isEnd) return;
        }
      })();

      const rolledBack: string[] = [];
      const rawWriters = Array.from({ length: 6 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 12; i++) {
            const held = await openAppend(url, t, `raw-${w}-${i}`, { w, i });
            await sleep(Math.random() * 25); // others reserve and commit meanwhile
            const rollback = (w + i) % 7 === 0;
            if (rollback) rolledBack.push(held.eventId);
            await held.finish(rollback ? 'rollback' : 'commit');
          }
        })(),
      );
      const storeWriters = Array.from({ length: 3 }, (_, w) =>
        (async () => {
          for (let i = 0; i < 15; i++) {
            await store.appendBatch([
              { streamId: recordStream(t, `s-${w}-${i}`), events: [recordIngested(t, `s-${w}-${i}`, { w, i })] },
              { streamId: recordStream(t, `s-${w}-${i}-b`), events: [recordIngested(t, `s-${w}-${i}-b`, { w, i })] },
            ]);
          }
        })(),
      );
      await Promise.all([...rawWriters, ...storeWriters]);

      const stored = await admin.query<{ event_id: string; global_position: string }>(
        'select event_id, global_position from keel_events where tenant_id = $1 order by global_position',
        [t],
      );
      expect(stored.rows.length).toBe(6 * 12 - rolledBack.length + 3 * 15 * 2);
      await eventually(() => viaSubscription.length, (n) => n >= stored.rows.length);
      await sleep(50);
      await sub.stop();
      readerDone = true;
      await reader;

      const expected = stored.rows.map((r) => r.event_id);
      expect(viaSubscription.map((e) => e.eventId)).toEqual(expected);
      expect(viaReadAll.map((e) => e.eventId)).toEqual(expected);
      for (const id of rolledBack) expect(expected).not.toContain(id);

      // The invariant behind the single-number checkpoint: position order is transaction order.
      const inversions = await admin.query<{ n: string }>(
        `select count(*) as n from (
           select transaction_id, lag(transaction_id) over (order by global_position) as previous from keel_events
         ) x where transaction_id < previous`,
      );
      expect(Number(inversions.rows[0]!.n)).toBe(0);
    });

    it('refuses a position reservation in a transaction that already wrote (it would break the order)', async () => {
      const client = await admin.connect();
      try {
        await client.query('begin');
        await client.query(`insert into keel_streams (stream_id, tenant_id) values ('x-y-z', 'y')`);
        const err = await rejection(client.query('select keel_reserve_positions(1)'));
        expect(err).toMatchObject({ code: 'KL500' });
      } finally {
        await client.query('rollback');
        client.release();
      }
    });
  });

  describe('deletes racing appends', () => {
    it('no append lands after a tombstone', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'contested');
      await store.appendToStream(stream, [recordIngested(t, 'contested', { n: -1 })]);
      const appends = Array.from({ length: 40 }, (_, i) => store.appendToStream(stream, [recordIngested(t, 'contested', { n: i })]));
      await sleep(3);
      const tombstone = store.deleteStream(stream, { hard: true });
      const results = await Promise.allSettled(appends);
      await tombstone;
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(StreamDeletedError);
      const count = await admin.query<{ n: string }>('select count(*) as n from keel_events where stream_id = $1', [stream]);
      expect(Number(count.rows[0]!.n)).toBe(ok + 1);
      expect(await rejection(store.appendToStream(stream, [recordIngested(t, 'contested', {})]))).toBeInstanceOf(StreamDeletedError);
      expect(await rejection(store.truncateBefore(stream, 1))).toBeInstanceOf(StreamDeletedError);
    });
  });

  describe('idempotency edges', () => {
    it('concurrent identical appends store once and both answer the same', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'twice');
      const events = [{ ...recordIngested(t, 'twice', { a: 1 }), eventId: randomUUID() }];
      const [a, b] = await Promise.all([
        store.appendToStream(stream, events, { expectedRevision: 'no_stream' }),
        store.appendToStream(stream, events, { expectedRevision: 'no_stream' }),
      ]);
      expect(a.globalPosition).toBe(b.globalPosition);
      expect(a.nextExpectedRevision).toBe(0);
      expect(b.nextExpectedRevision).toBe(0);
      expect(await store.readStream(stream)).toHaveLength(1);
    });

    it('refuses ids that are partly stored, stored in another stream, or repeated in one call', async () => {
      const t = randomUUID();
      const first = { ...recordIngested(t, 'p', { a: 1 }), eventId: randomUUID() };
      await store.appendToStream(recordStream(t, 'p'), [first]);
      const partly = await rejection(store.appendToStream(recordStream(t, 'p'), [first, recordIngested(t, 'p', { a: 2 })]));
      expect(partly).toBeInstanceOf(ValidationError);
      expect(partly).toMatchObject({ field: 'eventId' });
      const elsewhere = await rejection(store.appendToStream(recordStream(t, 'q'), [{ ...first, data: { ...first.data, externalId: 'q' } }]));
      expect(elsewhere).toMatchObject({ field: 'eventId' });
      const id = randomUUID();
      const repeated = await rejection(
        store.appendToStream(recordStream(t, 'r'), [
          { ...recordIngested(t, 'r', {}), eventId: id },
          { ...recordIngested(t, 'r', { x: 1 }), eventId: id },
        ]),
      );
      expect(repeated).toMatchObject({ field: 'eventId' });
      expect(await store.readStream(recordStream(t, 'p'))).toHaveLength(1);
      expect(await store.readStream(recordStream(t, 'q'))).toEqual([]);
      expect(await store.readStream(recordStream(t, 'r'))).toEqual([]);
    });

    it('a retried batch mixing stored and new streams stores only the new ones', async () => {
      const t = randomUUID();
      const a = { streamId: recordStream(t, 'a'), events: [{ ...recordIngested(t, 'a', {}), eventId: randomUUID() }], expectedRevision: 'no_stream' as const };
      const b = { streamId: recordStream(t, 'b'), events: [{ ...recordIngested(t, 'b', {}), eventId: randomUUID() }], expectedRevision: 'no_stream' as const };
      const first = await store.appendBatch([a]);
      const second = await store.appendBatch([a, b]);
      expect(second.appended).toBe(1);
      expect(second.streams).toEqual([
        { streamId: a.streamId, nextExpectedRevision: 0 },
        { streamId: b.streamId, nextExpectedRevision: 0 },
      ]);
      expect(second.globalPosition).toBeGreaterThan(first.globalPosition);
    });

    it('a retry that leaves out stored streams sends each remaining event its own data, in order', async () => {
      // The retry re-sends a subset of the call's JSON column: it must pick the right payloads.
      const t = randomUUID();
      const part = (id: string, n: number) => ({
        streamId: recordStream(t, id),
        events: Array.from({ length: n }, (_, k) => ({ ...recordIngested(t, id, { k, note: `${id}-${k} ü€😀` }), eventId: randomUUID() })),
      });
      const [a, b, c, d] = [part('a', 2), part('b', 3), part('c', 1), part('d', 2)];
      await store.appendBatch([b, d]);
      const res = await store.appendBatch([a, b, c, d]);
      expect(res.appended).toBe(3);
      for (const p of [a, b, c, d]) {
        const read = await store.readStream(p.streamId);
        expect(read.map((e) => e.eventId)).toEqual(p.events.map((e) => e.eventId));
        expect(read.map((e) => e.data)).toEqual(p.events.map((e) => e.data));
      }
    });
  });

  describe('input checks', () => {
    it('refuses events of another tenant than the stream, and malformed input, naming the field', async () => {
      const t = randomUUID();
      const cases: [() => Promise<unknown>, string][] = [
        [() => store.appendToStream(recordStream(t, 'x'), [recordIngested(randomUUID(), 'x', {})]), 'tenantId'],
        [() => store.appendToStream('no-dashes', [recordIngested(t, 'x', {})]), 'streamId'],
        [() => store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), eventId: 'not-a-uuid' }]), 'eventId'],
        [() => store.appendToStream(recordStream(t, 'x'), [recordIngested(t, 'x', {})], { expectedRevision: -1 as never }), 'expectedRevision'],
        [() => store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), actor: { kind: 'robot', id: 'r' } as never }]), 'actor.kind'],
        [() => store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), occurredAt: new Date('nope') }]), 'occurredAt'],
        [() => store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), dataJson: 42 as never }]), 'dataJson'],
        [() => store.appendToStream(recordStream(t, 'x'), [{ ...recordIngested(t, 'x', {}), dataJson: '[1]' }]), 'dataJson'],
        [
          () =>
            store.appendBatch([
              { streamId: recordStream(t, 'x'), events: [recordIngested(t, 'x', {})] },
              { streamId: recordStream(t, 'x'), events: [recordIngested(t, 'x', {})], expectedRevision: 0 },
            ]),
          'expectedRevision',
        ],
      ];
      for (const [call, field] of cases) {
        const err = await rejection(call());
        expect(err, field).toBeInstanceOf(ValidationError);
        expect(err, field).toMatchObject({ field });
      }
      expect(await store.readStream(recordStream(t, 'x'))).toEqual([]);
    });

    it('a batch may name a stream twice; the second part follows the first', async () => {
      const t = randomUUID();
      const s = recordStream(t, 'twice');
      const r = await store.appendBatch([
        { streamId: s, events: [recordIngested(t, 'twice', { n: 0 }), recordIngested(t, 'twice', { n: 1 })], expectedRevision: 'no_stream' },
        { streamId: recordStream(t, 'other'), events: [recordIngested(t, 'other', {})] },
        { streamId: s, events: [recordIngested(t, 'twice', { n: 2 })] },
      ]);
      expect(r.streams.map((x) => x.nextExpectedRevision)).toEqual([1, 0, 2]);
      const events = await store.readStream(s);
      expect(events.map((e) => (e.data as { payload: { n: number } }).payload.n)).toEqual([0, 1, 2]);
    });

    it('stores a given dataJson as the data text (what batch ingest hands over)', async () => {
      const t = randomUUID();
      const e = recordIngested(t, 'pre', { b: 1, a: 2 });
      const dataJson = JSON.stringify({ ...e.data, payload: { a: 2, b: 1 } });
      await store.appendToStream(recordStream(t, 'pre'), [{ ...e, dataJson }]);
      const raw = await admin.query<{ data: string }>('select data from keel_events where stream_id = $1', [recordStream(t, 'pre')]);
      expect(raw.rows.map((r) => r.data)).toEqual([dataJson]);
      const [read] = await store.readStream(recordStream(t, 'pre'));
      expect(Object.keys((read!.data as { payload: object }).payload)).toEqual(['a', 'b']);
    });
  });

  describe('readAll with a selective filter', () => {
    it('skips a long run of other events across several calls and resumes from the returned position', async () => {
      const noise = randomUUID();
      const t = randomUUID();
      const batch = Array.from({ length: 12_000 }, (_, i) => ({
        streamId: streamName('tenant', noise, `n${i % 500}`),
        events: [{ type: 'TenantSuspended', tenantId: noise, actor, data: { reason: `r${i}` } }],
      }));
      const before = await store.headPosition();
      await store.appendBatch(batch);
      const target = await store.appendToStream(streamName('tenant', t, t), [{ type: 'TenantCreated', tenantId: t, actor, data: { name: 'x' } }]);
      await eventually(() => store.headPosition(), (h) => h >= target.globalPosition);

      let after = before;
      let calls = 0;
      const found: RecordedEvent[] = [];
      for (;;) {
        const page = await store.readAll({ after, maxCount: 10, filter: { tenantId: t } });
        calls++;
        expect(page.position).toBeGreaterThanOrEqual(after);
        found.push(...page.events);
        after = page.position;
        if (page.isEnd) break;
      }
      expect(calls).toBeGreaterThan(1); // the window is smaller than the noise
      expect(found.map((e) => e.eventId)).toEqual([target.events[0]!.eventId]);
      expect(after).toBeGreaterThanOrEqual(target.globalPosition);
    });
  });

  describe('wake-ups', () => {
    it('a subscriber in another store instance wakes on NOTIFY, long before its poll interval', async () => {
      const other = getPostgreSQLEventStore({ connectionString: url, registry });
      const t = randomUUID();
      const got: RecordedEvent[] = [];
      const sub = other.subscribe({ filter: { tenantId: t }, pollIntervalMs: 10 * 60_000 }, async (events) => {
        got.push(...events);
      });
      try {
        await sleep(300); // first read done, LISTEN in place, now sleeping for ten minutes
        await store.appendToStream(recordStream(t, 'n'), [recordIngested(t, 'n', {})]);
        await eventually(() => got.length, (n) => n >= 1, 30_000);
        expect(got[0]!.tenantId).toBe(t);
      } finally {
        await sub.stop();
        await other.close();
      }
    });

    it('a subscriber in the same instance wakes on the append itself (notify off)', async () => {
      const quiet = getPostgreSQLEventStore({ connectionString: url, registry, notify: false });
      const t = randomUUID();
      const got: RecordedEvent[] = [];
      const sub = quiet.subscribe({ filter: { tenantId: t }, pollIntervalMs: 10 * 60_000 }, async (events) => {
        got.push(...events);
      });
      try {
        await sleep(200);
        await quiet.appendToStream(recordStream(t, 'n'), [recordIngested(t, 'n', {})]);
        await eventually(() => got.length, (n) => n >= 1, 30_000);
      } finally {
        await sub.stop();
        await quiet.close();
      }
    });
  });

  describe('schema', () => {
    it('keel_events has exactly the three indexes the reads need, and every row carries its tenant', async () => {
      const idx = await admin.query<{ indexname: string }>(
        "select indexname from pg_indexes where tablename = 'keel_events' order by indexname",
      );
      expect(idx.rows.map((r) => r.indexname)).toEqual(['keel_events_event_id_key', 'keel_events_pkey', 'keel_events_stream_key']);
      const cols = await admin.query<{ column_name: string; is_nullable: string }>(
        "select column_name, is_nullable from information_schema.columns where table_name = 'keel_events' and column_name in ('tenant_id', 'transaction_id')",
      );
      expect(cols.rows.every((c) => c.is_nullable === 'NO')).toBe(true);
      expect(cols.rows).toHaveLength(2);
    });
  });

  describe('without a registry', () => {
    it('stores any type at version 1 unless told otherwise, and reads it as stored', async () => {
      const bare = getPostgreSQLEventStore({ connectionString: url });
      try {
        const t = randomUUID();
        const s = streamName('misc', t, 'x');
        await bare.appendToStream(s, [{ type: 'SomethingNew', tenantId: t, actor, data: { a: [1, 'b', null] } }]);
        await bare.appendToStream(s, [{ type: 'RecordIngested', schemaVersion: 1, tenantId: t, actor, data: { odd: true } }]);
        const events = await bare.readStream(s);
        expect(events.map((e) => [e.type, e.schemaVersion, e.data])).toEqual([
          ['SomethingNew', 1, { a: [1, 'b', null] }],
          ['RecordIngested', 1, { odd: true }],
        ]);
      } finally {
        await bare.close();
      }
    });
  });

  describe('pool ownership and outages', () => {
    it('uses a given pool and leaves it open on close', async () => {
      const pool = new pg.Pool({ connectionString: url, max: 3 });
      pool.on('error', () => undefined);
      const s = getPostgreSQLEventStore({ pool, registry });
      const t = randomUUID();
      await s.appendToStream(recordStream(t, 'pool'), [recordIngested(t, 'pool', {})]);
      await s.close();
      const r = await pool.query('select 1 as one');
      expect(r.rows[0].one).toBe(1);
      await pool.end();
    });

    it('answers UnavailableError when the database cannot be reached', async () => {
      const down = getPostgreSQLEventStore({ connectionString: 'postgres://keel:keel@127.0.0.1:1/nothing', registry });
      const t = randomUUID();
      try {
        expect(await rejection(down.appendToStream(recordStream(t, 'x'), [recordIngested(t, 'x', {})]))).toBeInstanceOf(UnavailableError);
        expect(await rejection(down.readAll())).toBeInstanceOf(UnavailableError);
        expect(await rejection(down.readStream(recordStream(t, 'x')))).toBeInstanceOf(UnavailableError);
      } finally {
        await down.close();
      }
    });

    it('maps a lost revision race to a ConcurrencyError for exact expectations', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'race');
      await store.appendToStream(stream, [recordIngested(t, 'race', {})]);
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => store.appendBatch([{ streamId: stream, events: [recordIngested(t, 'race', { i })], expectedRevision: 0 }])),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConcurrencyError);
    });
  });
});
