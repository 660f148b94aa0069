import { randomUUID } from 'node:crypto';
import knex from 'knex';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConcurrencyError,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  runMigrations,
  storeMigrations,
  StreamDeletedError,
  streamName,
  ValidationError,
  type NewEvent,
} from '@keel/shared-events';
import { append, type AppendContext } from '../src/store/postgres/append.ts';
import { RevisionCache } from '../src/store/postgres/revision-cache.ts';
import { deleteStream } from '../src/store/postgres/streams.ts';
import { freshDatabase } from '../../test/support.ts';

/**
 * Revision hints (revision-cache.ts): appends to a stream this store wrote last skip keel_append's
 * index probe. Two contexts on one database play two writers (two processes, two ingest threads).
 */

const registry = createSchemaRegistry();
const actor = { kind: 'system', id: 'revision-hints-test' } as const;
let pool: pg.Pool;

beforeAll(async () => {
  const url = await freshDatabase('hints');
  await runMigrations(url, [storeMigrations]);
  pool = new pg.Pool({ connectionString: url, max: 4 });
});
afterAll(async () => {
  await pool?.end();
});

function writer(cache = new RevisionCache(1000)): AppendContext & { revisions: RevisionCache } {
  return { pool, registry, revisions: cache, onAppended: () => undefined };
}

function stream(): { id: string; tenantId: string } {
  const tenantId = randomUUID();
  return { id: streamName('connector', tenantId, randomUUID()), tenantId };
}

function paused(tenantId: string, n: number): NewEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    type: 'ConnectorPaused',
    tenantId,
    actor,
    data: { connectorId: 'con_01', reason: `pause ${i}` },
  }));
}

async function revisions(streamId: string): Promise<number[]> {
  const res = await pool.query<{ p: string }>(
    'select stream_position as p from keel_events where stream_id = $1 order by 1',
    [streamId],
  );
  return res.rows.map((r) => Number(r.p));
}

const put = (w: AppendContext, streamId: string, events: NewEvent[], expectedRevision?: number | 'any') =>
  append(w, [{ streamId, events, ...(expectedRevision === undefined ? {} : { expectedRevision }) }], false);

describe('revision hints', () => {
  it('a stream this store wrote last is appended to with its revision as a hint', async () => {
    const a = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 3));
    expect(a.revisions.stats.hintedCalls).toBe(0); // nothing known yet: probed
    const out = await put(a, s.id, paused(s.tenantId, 2));
    expect(a.revisions.stats).toEqual({ hintedCalls: 1, staleCalls: 0 });
    expect(out.streams[0]!.nextExpectedRevision).toBe(4);
    expect(await revisions(s.id)).toEqual([0, 1, 2, 3, 4]);
    expect(a.revisions.hintFor(s.id, 'any')).toBe(4);
  });

  it('the server takes a hint instead of probing (shown with a hint no real run can produce)', async () => {
    // Hints are only ever revisions this store saw committed, so never too high. A planted one
    // that is too high shows where the positions come from: without the hint, this would be 1.
    const a = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 1));
    a.revisions.set(s.id, 9);
    await put(a, s.id, paused(s.tenantId, 1));
    expect(await revisions(s.id)).toEqual([0, 10]);
  });

  it('a hint gone stale because another writer appended costs one retry, and loses nothing', async () => {
    const a = writer();
    const b = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 1)); // a: revision 0
    await put(b, s.id, paused(s.tenantId, 2)); // the stream moves to 2 behind a's back
    const out = await put(a, s.id, paused(s.tenantId, 1));
    expect(out.streams[0]!.nextExpectedRevision).toBe(3);
    expect(await revisions(s.id)).toEqual([0, 1, 2, 3]);
    expect(a.revisions.stats).toEqual({ hintedCalls: 1, staleCalls: 1 });
    expect(a.revisions.hintFor(s.id, 'any')).toBe(3); // learned from the probe of the retry
  });

  it('an expected revision equal to a stale hint is still a conflict, with the true revision', async () => {
    const a = writer();
    const b = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 1));
    await put(b, s.id, paused(s.tenantId, 2));
    const err = await put(a, s.id, paused(s.tenantId, 1), 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConcurrencyError);
    expect(err).toMatchObject({ streamId: s.id, expected: '0', actual: 2 });
    expect(await revisions(s.id)).toEqual([0, 1, 2]);
  });

  it('a conflict judged from a hint is judged again without it (soft delete in between)', async () => {
    const a = writer();
    const b = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 2)); // a: revision 1
    await put(b, s.id, paused(s.tenantId, 2)); // 3
    await deleteStream(pool, s.id); // reads start at 4
    await put(b, s.id, paused(s.tenantId, 2)); // 5: the stream is back
    // From the hint (1, below the soft delete) the stream would look absent: actual -1.
    const err = await put(a, s.id, paused(s.tenantId, 1), 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConcurrencyError);
    expect(err).toMatchObject({ streamId: s.id, expected: '1', actual: 5 });
  });

  it('a stream tombstoned after its hint was taken refuses the append', async () => {
    const a = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 1));
    await deleteStream(pool, s.id, { hard: true });
    await expect(put(a, s.id, paused(s.tenantId, 1))).rejects.toBeInstanceOf(StreamDeletedError);
    expect(await revisions(s.id)).toEqual([0]);
  });

  it('after a stale hint, hints rest for the configured number of calls', async () => {
    const a = writer(new RevisionCache(1000, 2));
    const b = writer();
    const s = stream();
    await put(a, s.id, paused(s.tenantId, 1));
    await put(b, s.id, paused(s.tenantId, 1));
    await put(a, s.id, paused(s.tenantId, 1)); // stale: hints rest for 2 calls
    expect(a.revisions.stats).toEqual({ hintedCalls: 1, staleCalls: 1 });
    await put(a, s.id, paused(s.tenantId, 1));
    expect(a.revisions.stats.hintedCalls).toBe(1); // resting
    await put(a, s.id, paused(s.tenantId, 1));
    expect(a.revisions.stats.hintedCalls).toBe(2); // back
    expect(await revisions(s.id)).toEqual([0, 1, 2, 3, 4]);
  });

  it('a batch mixing hinted and unknown streams places every event right', async () => {
    const a = writer();
    const b = writer();
    const known = stream();
    const moved = stream();
    const fresh = stream();
    await append(
      a,
      [
        { streamId: known.id, events: paused(known.tenantId, 2) },
        { streamId: moved.id, events: paused(moved.tenantId, 1) },
      ],
      false,
    );
    await put(b, moved.id, paused(moved.tenantId, 1));
    const out = await append(
      a,
      [
        { streamId: known.id, events: paused(known.tenantId, 1) },
        { streamId: fresh.id, events: paused(fresh.tenantId, 2), expectedRevision: 'no_stream' },
        { streamId: moved.id, events: paused(moved.tenantId, 1) },
      ],
      false,
    );
    expect(out.streams.map((x) => x.nextExpectedRevision)).toEqual([2, 1, 2]);
    expect(await revisions(known.id)).toEqual([0, 1, 2]);
    expect(await revisions(fresh.id)).toEqual([0, 1]);
    expect(await revisions(moved.id)).toEqual([0, 1, 2]);
  });
});

describe('the hints migration', () => {
  const inArgs = async (p: pg.Pool) =>
    Number(
      (await p.query<{ n: number }>("select pronargs as n from pg_proc where proname = 'keel_append'")).rows[0]!.n,
    );

  it('upgrades a store created before it, keeps its events appendable, and rolls back to the old function', async () => {
    const url = await freshDatabase('hints_mig');
    const db = knex({ client: 'pg', connection: url, pool: { min: 0, max: 1 } });
    const p = new pg.Pool({ connectionString: url, max: 2 });
    const config = {
      directory: storeMigrations.directory,
      tableName: storeMigrations.tableName,
      loadExtensions: ['.mjs'],
    };
    try {
      await db.migrate.up(config); // the first store migration only
      expect(await inArgs(p)).toBe(16);
      const s = stream();
      const before = getPostgreSQLEventStore({ pool: p, registry, revisionCacheSize: 0 });
      // The current store passes 17 arguments: against the old function it cannot append.
      await expect(before.appendToStream(s.id, paused(s.tenantId, 1))).rejects.toThrow(/keel_append/);
      await db.migrate.latest(config);
      expect(await inArgs(p)).toBe(17);
      const store = getPostgreSQLEventStore({ pool: p, registry });
      await store.appendToStream(s.id, paused(s.tenantId, 2));
      await store.appendToStream(s.id, paused(s.tenantId, 1), { expectedRevision: 1 }); // hinted
      expect((await store.readStream(s.id)).map((e) => e.streamPosition)).toEqual([0, 1, 2]);
      await db.migrate.down(config);
      expect(await inArgs(p)).toBe(16);
    } finally {
      await db.destroy();
      await p.end();
    }
  });
});

describe('RevisionCache', () => {
  it('keeps the last capacity / 2 written streams, and never more than its capacity', () => {
    const c = new RevisionCache(4); // generations of 2
    c.set('a', 1);
    c.set('b', 1); // a and b become the old generation
    c.set('a', 2); // written again: the young generation has the newer revision
    expect([c.hintFor('a', 'any'), c.hintFor('b', 'any')]).toEqual([2, 1]);
    c.set('c', 1); // a and c become the old generation; b is dropped
    expect([c.hintFor('a', 'any'), c.hintFor('b', 'any'), c.hintFor('c', 'any')]).toEqual([2, -1, 1]);
    expect(c.size).toBeLessThanOrEqual(4);
  });

  it('stays bounded and keeps the newest half through many writes of new streams (as under ingest)', () => {
    const c = new RevisionCache(1000);
    for (let i = 0; i < 100_000; i++) {
      c.set(`s${i}`, i);
      if (i % 997 === 0) expect(c.size).toBeLessThanOrEqual(1000);
    }
    for (let i = 100_000 - 500; i < 100_000; i++) expect(c.hintFor(`s${i}`, 'any')).toBe(i);
    expect(c.hintFor('s0', 'any')).toBe(-1);
  });

  it('forgets a stream in both generations', () => {
    const c = new RevisionCache(4);
    c.set('a', 1);
    c.set('b', 1); // old: a, b
    c.set('a', 2); // young: a
    c.forget(['a']);
    expect(c.hintFor('a', 'any')).toBe(-1);
    expect(c.hintFor('b', 'any')).toBe(1);
  });

  it('hints only where a hint cannot change the verdict', () => {
    const c = new RevisionCache(10);
    c.set('s', 4);
    expect(c.hintFor('s', 'any')).toBe(4);
    expect(c.hintFor('s', 4)).toBe(4);
    expect(c.hintFor('s', 3)).toBe(-1);
    expect(c.hintFor('s', 'no_stream')).toBe(-1);
    expect(c.hintFor('s', 'stream_exists')).toBe(-1);
    expect(c.hintFor('other', 'any')).toBe(-1);
  });

  it('size 0 turns hints off', () => {
    const c = new RevisionCache(0);
    c.set('s', 4);
    expect(c.beginCall()).toBe(false);
    expect(c.hintFor('s', 'any')).toBe(-1);
  });

  it('the store refuses a negative or fractional size', () => {
    for (const revisionCacheSize of [-1, 1.5]) {
      expect(() => getPostgreSQLEventStore({ connectionString: 'postgres://unused/db', revisionCacheSize })).toThrow(
        ValidationError,
      );
    }
  });
});
