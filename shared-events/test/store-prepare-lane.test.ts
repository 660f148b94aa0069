import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSchemaRegistry, runMigrations, storeMigrations, streamName, type EventSchemaRegistry, type NewEvent } from '@keel/shared-events';
import { append, PrepareLane, type AppendContext } from '../src/store/postgres/append.ts';
import { freshDatabase } from '../../test/support.ts';

/**
 * Large appends take turns preparing (PrepareLane): two batches in flight are validated one after
 * the other, so the first is sent while the second is still being prepared, instead of both
 * finishing together. Small appends never queue behind a large one.
 */

const actor = { kind: 'system', id: 'prepare-lane-test' } as const;
let pool: pg.Pool;

beforeAll(async () => {
  const url = await freshDatabase('lane');
  await runMigrations(url, [storeMigrations]);
  pool = new pg.Pool({ connectionString: url, max: 6 });
});
afterAll(async () => {
  await pool?.end();
});

/** The schema registry, noting the reason of every event it validates, in order. */
function recordingRegistry(seen: string[]): EventSchemaRegistry {
  const inner = createSchemaRegistry();
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'validate') {
        return (type: string, version: number, data: { reason?: string }) => {
          seen.push(String(data.reason));
          return target.validate(type, version, data);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** `n` single-event appends on distinct streams of one tenant, each event's reason `${label}`. */
function batch(label: string, n: number) {
  const tenantId = randomUUID();
  return Array.from({ length: n }, () => ({
    streamId: streamName('connector', tenantId, randomUUID()),
    events: [{ type: 'ConnectorPaused', tenantId, actor, data: { connectorId: 'con_01', reason: label } } as NewEvent],
  }));
}

/** The labels in the order validated, with repeats collapsed: ['a', 'b'] means all of a, then all of b. */
function runs(seen: string[]): string[] {
  return seen.filter((x, i) => i === 0 || seen[i - 1] !== x);
}

describe('PrepareLane', () => {
  it('two large batches in flight are prepared one after the other, and both are stored', async () => {
    const seen: string[] = [];
    const ctx: AppendContext = { pool, registry: recordingRegistry(seen), lane: new PrepareLane(), onAppended: () => undefined };
    const [a, b] = await Promise.all([append(ctx, batch('a', 1000), false), append(ctx, batch('b', 1000), false)]);
    expect(runs(seen)).toEqual(['a', 'b']);
    expect([a.appended, b.appended]).toEqual([1000, 1000]);
  });

  it('without the lane the same two batches interleave (what the lane is there to prevent)', async () => {
    const seen: string[] = [];
    const ctx: AppendContext = { pool, registry: recordingRegistry(seen), onAppended: () => undefined };
    await Promise.all([append(ctx, batch('a', 1000), false), append(ctx, batch('b', 1000), false)]);
    expect(runs(seen).length).toBeGreaterThan(2);
  });

  it('a small append does not wait for a large one to finish preparing', async () => {
    const seen: string[] = [];
    const ctx: AppendContext = { pool, registry: recordingRegistry(seen), lane: new PrepareLane(), onAppended: () => undefined };
    const big = append(ctx, batch('big', 2000), false);
    const other = append(ctx, batch('other', 2000), false);
    await new Promise((r) => setImmediate(r)); // the first large batch is under way
    const small = append(ctx, batch('small', 3), false);
    await Promise.all([big, other, small]);
    const firstSmall = seen.indexOf('small');
    expect(firstSmall).toBeGreaterThan(0);
    expect(firstSmall).toBeLessThan(seen.lastIndexOf('big')); // in between the big batch's slices
    expect(seen.indexOf('other')).toBeGreaterThan(seen.lastIndexOf('big'));
  });

  it('a refused large batch hands the lane on', async () => {
    const seen: string[] = [];
    const ctx: AppendContext = { pool, registry: recordingRegistry(seen), lane: new PrepareLane(), onAppended: () => undefined };
    const bad = batch('bad', 600);
    (bad[500]!.events[0] as { type: string }).type = 'NoSuchEvent';
    const results = await Promise.allSettled([append(ctx, bad, false), append(ctx, batch('good', 600), false)]);
    expect(results[0].status).toBe('rejected');
    expect(results[1]).toMatchObject({ status: 'fulfilled', value: { appended: 600 } });
  });

  it('hands over in arrival order', async () => {
    const lane = new PrepareLane();
    const order: number[] = [];
    await lane.acquire();
    const waiters = [1, 2, 3].map((k) => lane.acquire().then(() => {
      order.push(k);
      lane.release();
    }));
    lane.release();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3]);
    await lane.acquire(); // free again: taken at once
    lane.release();
  });
});
