import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { Logger } from 'pino';
import type { MigrationSet } from '../../db/migrate.ts';
import { ValidationError } from '../../errors.ts';
import type { EventSchemaRegistry } from '../../schemas/registry-port.ts';
import type { EventStore } from '../port.ts';
import { append, PrepareLane } from './append.ts';
import { RevisionCache } from './revision-cache.ts';
import { headPosition, readAll, readAllDetailed, readStream } from './read.ts';
import { deleteStream, getStreamMetadata, truncateBefore } from './streams.ts';
import { createListener, createNotifier, createWakeHub, subscribe } from './subscribe.ts';

/**
 * The PostgreSQL event store.
 *
 * Tables (migrations/store): keel_events holds every event (tenant_id on every row) with three
 * indexes, each serving a read: the primary key on global_position (readAll, subscribe), the
 * unique (stream_id, stream_position) (readStream, current revision, optimistic concurrency) and
 * the unique event_id (idempotency; UUIDv7 ids keep it append-mostly). keel_streams holds the
 * few streams with truncation or deletion metadata, written only by those operations.
 *
 * Gap-safe global log. The danger: transaction A takes position 10, transaction B takes 11 and
 * commits first; a reader that sees 11 and checkpoints it never sees 10. The classic xid8 fix
 * orders readers by (transaction_id, global_position) and only reads rows whose transaction is
 * older than the oldest one still running (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`);
 * but then the resume point is a pair, while our port's checkpoint is one number.
 * So we make the two orders the same: keel_reserve_positions() assigns the transaction's id and
 * reserves its block of positions under one advisory lock (held for microseconds, released
 * before the insert and the commit, so commits still group), and refuses a transaction that
 * already has an id. Among store transactions, a higher position then always means a higher
 * transaction id. A reader scans in position order and stops at the first row whose
 * transaction_id is not below the snapshot's xmin: every lower position belongs to a
 * transaction with a lower id, hence finished (committed, and visible, or rolled back). The
 * checkpoint is the global position of the last event read: a single number, dense but for
 * rolled-back reservations. The price of the xid8 approach: a long transaction anywhere in the
 * cluster that holds an xid makes readers wait (never skip) until it ends.
 */
export interface PostgreSQLEventStoreOptions {
  connectionString?: string;
  /** A pool to use instead of creating one; the store does not end it on close(). */
  pool?: pg.Pool;
  /** When given: new events are validated (and their schemaVersion defaults to the newest) and reads upcast. */
  registry?: EventSchemaRegistry;
  /** Size of the pool the store creates from connectionString. Default 10. */
  poolSize?: number;
  /** NOTIFY after appends so subscribers in other processes wake at once. Default true. */
  notify?: boolean;
  /**
   * How many streams' last written revisions to remember (see revision-cache.ts): appends to a
   * remembered stream skip an index probe on the server. Default 100,000 (a few MB); 0 turns it off.
   */
  revisionCacheSize?: number;
  logger?: Logger;
}

export const storeMigrations: MigrationSet = {
  directory: fileURLToPath(new URL('../../../migrations/store/', import.meta.url)),
  tableName: 'keel_migrations_store',
};

export function getPostgreSQLEventStore(options: PostgreSQLEventStoreOptions): EventStore {
  if (!options.pool && !options.connectionString) {
    throw new ValidationError('getPostgreSQLEventStore needs a pool or a connectionString', 'connectionString');
  }
  const revisionCacheSize = options.revisionCacheSize ?? 100_000;
  if (!Number.isSafeInteger(revisionCacheSize) || revisionCacheSize < 0) {
    throw new ValidationError('revisionCacheSize must be a whole number >= 0', 'revisionCacheSize');
  }
  const ownsPool = !options.pool;
  const pool =
    options.pool ??
    new pg.Pool({
      connectionString: options.connectionString,
      max: options.poolSize ?? 10,
      // Short OLTP statements: JIT compilation (tens of ms) would cost more than any of them.
      // Options given in the connection string take precedence over this.
      options: '-c jit=off',
    });
  if (ownsPool) {
    // An idle client losing its connection (database restart) must not crash the process.
    pool.on('error', (err) => options.logger?.warn({ err: err.message }, 'event store: idle connection lost'));
  }
  const { registry, logger } = options;
  const hub = createWakeHub();
  const notifier = options.notify === false ? undefined : createNotifier(pool, logger);
  const listener = createListener(pool, hub, logger);
  let subscriptions = 0;
  const live = new Set<{ stop(): Promise<void> }>();
  let closed = false;

  const readCtx = { pool, registry };
  const appendCtx = {
    pool,
    registry,
    revisions: new RevisionCache(revisionCacheSize),
    lane: new PrepareLane(),
    onAppended: () => {
      hub.wakeAll();
      notifier?.schedule();
    },
  };

  return {
    kind: 'postgresql',
    async appendToStream(streamId, events, opts) {
      const out = await append(appendCtx, [{ streamId, events, expectedRevision: opts?.expectedRevision }], true);
      return { nextExpectedRevision: out.streams[0]!.nextExpectedRevision, globalPosition: out.globalPosition, events: out.events! };
    },
    async appendBatch(appends) {
      const out = await append(appendCtx, appends, false);
      return { globalPosition: out.globalPosition, streams: out.streams, appended: out.appended };
    },
    readStream: (streamId, opts) => readStream(readCtx, streamId, opts),
    readAll: (opts) => readAll(readCtx, opts),
    subscribe(opts, handler) {
      if (closed) throw new ValidationError('the event store is closed', 'store');
      const sub = subscribe(
        {
          readAll: (o) => readAllDetailed(readCtx, o),
          hub,
          logger,
          onStart: () => {
            if (subscriptions++ === 0) listener.start();
          },
          onEnd: () => {
            if (--subscriptions === 0) void listener.stop();
          },
        },
        opts ?? {},
        handler,
      );
      live.add(sub);
      void sub.done.catch(() => undefined).finally(() => live.delete(sub));
      return sub;
    },
    truncateBefore: (streamId, revision) => truncateBefore(pool, streamId, revision),
    deleteStream: (streamId, opts) => deleteStream(pool, streamId, opts),
    getStreamMetadata: (streamId) => getStreamMetadata(pool, streamId),
    headPosition: () => headPosition(readCtx),
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([...live].map((s) => s.stop()));
      await listener.stop();
      await notifier?.idle();
      if (ownsPool) await pool.end();
    },
  };
}
