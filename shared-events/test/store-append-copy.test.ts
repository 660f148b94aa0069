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
  streamName,
  ValidationError,
  type EventStore,
  type NewEvent,
} from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';

/**
 * Large appends go in through keel_append_begin + a binary COPY in one transaction (append.ts,
 * copyAppend). The contract and store suites run on that path too (copyMinEvents: 1); these are
 * its own edges: a refusal in the middle of the COPY, the connection after it, the default
 * threshold, and the migration.
 */

const registry = createSchemaRegistry();
const actor = { kind: 'system', id: 'append-copy-test' } as const;
let url: string;
let admin: pg.Pool;

beforeAll(async () => {
  url = await freshDatabase('copy');
  await runMigrations(url, [storeMigrations]);
  admin = new pg.Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  await admin?.end();
});

function part(tenantId: string, n: number, label = 'p') {
  return {
    streamId: streamName('connector', tenantId, randomUUID()),
    events: Array.from({ length: n }, (_, i): NewEvent => ({
      eventId: randomUUID(),
      type: 'ConnectorPaused',
      tenantId,
      actor,
      data: { connectorId: 'con_01', reason: `${label} ${i}` },
    })),
  };
}

const count = async (tenantId: string) =>
  Number((await admin.query<{ n: string }>('select count(*) as n from keel_events where tenant_id = $1', [tenantId])).rows[0]!.n);

describe('appends through COPY', () => {
  let store: EventStore;
  beforeAll(() => {
    // One connection: every call after a failure reuses the connection the failure left.
    store = getPostgreSQLEventStore({ connectionString: url, registry, poolSize: 1, copyMinEvents: 1 });
  });
  afterAll(async () => {
    await store?.close();
  });

  it('an event id refused in the middle of the COPY stores nothing of the call, and the connection goes on', async () => {
    const t = randomUUID();
    const stored = part(t, 1, 'first');
    await store.appendBatch([stored]);
    const batch = [part(t, 150, 'a'), { ...part(t, 1, 'b'), events: [{ ...stored.events[0]!, data: { connectorId: 'con_01', reason: 'again' } }] }, part(t, 150, 'c')];
    const err = await store.appendBatch(batch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError); // the id is stored in another stream
    expect(await count(t)).toBe(1);
    const after = await store.appendBatch([part(t, 200, 'd')]);
    expect(after.appended).toBe(200);
    expect(await count(t)).toBe(201);
  });

  it('a conflict found by keel_append_begin stores nothing and the connection goes on', async () => {
    const t = randomUUID();
    const a = part(t, 120);
    await store.appendBatch([a]);
    const err = await store.appendBatch([part(t, 120), { ...part(t, 5), streamId: a.streamId, expectedRevision: 3 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConcurrencyError);
    expect(err).toMatchObject({ streamId: a.streamId, actual: 119 });
    expect(await count(t)).toBe(120);
    expect((await store.appendBatch([part(t, 130)])).appended).toBe(130);
  });

  it('answers with the recorded events (positions, recordedAt) exactly as they read back', async () => {
    const t = randomUUID();
    const p = part(t, 140);
    const res = await store.appendToStream(p.streamId, p.events);
    const read = await store.readStream(p.streamId);
    expect(read.map((e) => [e.eventId, e.streamPosition, e.globalPosition, e.recordedAt.getTime()])).toEqual(
      res.events.map((e) => [e.eventId, e.streamPosition, e.globalPosition, e.recordedAt.getTime()]),
    );
    expect(new Set(read.map((e) => e.recordedAt.getTime())).size).toBe(1); // one transaction
  });
});

describe('the default threshold', () => {
  it('up to 99 events go through keel_append, from 100 on through BEGIN, keel_append_begin, COPY, COMMIT', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    const seen: string[] = [];
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        const q = args[0] as string | { name?: string; text?: string };
        seen.push(typeof q === 'string' ? q : (q.name ?? q.text ?? 'copy').split(' ')[0]!);
        return query(...args);
      };
    });
    const store = getPostgreSQLEventStore({ pool, registry, notify: false });
    try {
      const t = randomUUID();
      await store.appendBatch([part(t, 99)]);
      const small = seen.splice(0);
      await store.appendBatch([part(t, 100)]);
      expect(small).toEqual(['keel_store_append']);
      expect(seen).toEqual(['begin', 'keel_store_append_begin', 'copy', 'commit']);
      expect(await count(t)).toBe(199);
    } finally {
      await store.close();
      await pool.end();
    }
  });

  it('refuses a negative or fractional copyMinEvents', () => {
    for (const copyMinEvents of [-1, 1.5, Number.NaN]) {
      expect(() => getPostgreSQLEventStore({ connectionString: url, copyMinEvents })).toThrow(ValidationError);
    }
  });
});

describe('the keel_append_begin migration', () => {
  it('rolls back (the function is gone, small appends still work) and applies again', async () => {
    const db = knex({ client: 'pg', connection: await freshDatabase('copy_mig'), pool: { min: 0, max: 1 } });
    const config = { directory: storeMigrations.directory, tableName: storeMigrations.tableName, loadExtensions: ['.mjs'] };
    const exists = async () => (await db.raw("select count(*)::int as n from pg_proc where proname = 'keel_append_begin'")).rows[0].n as number;
    try {
      await db.migrate.latest(config);
      expect(await exists()).toBe(1);
      await db.migrate.down(config);
      expect(await exists()).toBe(0);
      await db.migrate.latest(config);
      expect(await exists()).toBe(1);
    } finally {
      await db.destroy();
    }
  });
});
