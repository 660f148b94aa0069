import type pg from 'pg';
import type { EventStore, KeelRuntime, ReadAllResult, RecordedEvent } from '@keel/shared-events';
import { HttpError, KeelError } from '@keel/shared-events';
import { chainBatch, loadHeads, writeChainedBatch } from '../audit/store.ts';
import type { HeadState } from '../audit/store.ts';
import { rebuildIndexMemoryMB } from '../config.ts';
import { applyDashboardBatch } from '../dashboard/store.ts';
import { SHADOW_SUFFIX, isProjectionName, projectionTables, tableNames } from '../db/schema.ts';
import type { ProjectionName, TableNames } from '../db/schema.ts';
import { analyzeShadow, createShadow, createShadowIndexes, dropShadow, shadowExists, swapShadow } from './shadow.ts';

/**
 * Rebuild a projection: replay the store from position 0 into shadow tables while the live model
 * keeps serving (and its projector keeps running), then swap the shadows in atomically.
 *
 * - Progress is stored with every batch in the same transaction as the shadow rows
 *   (projection_rebuilds), so an interrupted rebuild resumes where it stopped.
 * - One rebuild per projection at a time (a session advisory lock).
 * - The swap locks the live tables in the order the live projector touches them (no deadlock),
 *   catches the shadow up to the store's head, and replaces the tables. The live projector, blocked
 *   meanwhile, then finds the shadow's per-tenant positions and skips what the rebuild already
 *   applied: nothing is applied twice or lost.
 * - Audit: the rebuilt chain must pass through every signed checkpoint made before; otherwise
 *   the store no longer matches what was signed and the swap is refused (ChainMismatchError).
 */
export interface RebuildProgress {
  projection: ProjectionName;
  phase: 'replaying' | 'indexing' | 'swapping' | 'done';
  events: number;
  position: number;
  /** The store's head when last looked at. */
  headPosition: number;
  eventsPerSecond: number;
  /** Seconds to reach the head at the current rate; undefined while unknown. */
  etaSeconds?: number;
}

export interface RebuildOptions {
  onProgress?: (p: RebuildProgress) => void;
  /** Events per batch read from the store. Default 10000. */
  batchSize?: number;
  /** Aborting stops after the batch in flight; the rebuild can be resumed by running it again. */
  signal?: AbortSignal;
  /** Build the audit table's secondary indexes after the bulk load (default) rather than during it. */
  deferIndexes?: boolean;
  /**
   * maintenance_work_mem of each of the two sessions that build the indexes after the load, in MiB.
   * Default: KEEL_REBUILD_INDEX_MEMORY_MB, else 1024.
   */
  indexMemoryMB?: number;
}

export interface RebuildResult {
  projection: ProjectionName;
  /** Events replayed by this run (not counting a previous interrupted run). */
  events: number;
  /** Events replayed in total into the swapped-in tables. */
  totalEvents: number;
  position: number;
  durationMs: number;
  eventsPerSecond: number;
  /** Set when this run continued an interrupted rebuild from that position. */
  resumedFrom?: number;
}

export class RebuildBusyError extends HttpError {
  constructor(projection: string) {
    super('REBUILD_RUNNING', 409, `a rebuild of ${projection} is already running`, { projection });
  }
}

export class RebuildInterruptedError extends KeelError {
  readonly code = 'REBUILD_INTERRUPTED';
  constructor(projection: string, position: number) {
    super(`rebuild of ${projection} interrupted at position ${position}; run it again to resume`, {
      projection,
      position,
    });
  }
}

/** The rebuilt audit chain does not pass through a checkpoint signed earlier: the store changed. */
export class ChainMismatchError extends KeelError {
  readonly code = 'CHAIN_MISMATCH';
}

export class UnknownProjectionError extends HttpError {
  constructor(name: string) {
    super('NOT_FOUND', 404, `no projection "${name}" (known: audit, dashboard)`, { projection: name });
  }
}

interface Applier {
  /** Tables filled without indexes (their keys and indexes are built after the bulk load). */
  deferIndexes: string[];
  /** The live tables in the order the live projector first touches them. */
  lockOrder: readonly string[];
  prepare(client: pg.ClientBase, shadow: TableNames): Promise<void>;
  /**
   * The CPU half of a batch, run while the previous batch is still being written; `write` then
   * runs in the batch's transaction.
   */
  stage(events: RecordedEvent[]): (client: pg.ClientBase, shadow: TableNames) => Promise<void>;
  beforeSwap(client: pg.ClientBase, shadow: TableNames): Promise<void>;
}

function auditApplier(): Applier {
  let heads = new Map<string, HeadState>();
  return {
    deferIndexes: ['audit_events'],
    lockOrder: ['audit_chain_heads', 'audit_events'],
    async prepare(client, shadow) {
      // The rebuild is the only writer of its shadow: the heads live in memory between batches.
      const r = await client.query(`select tenant_id from ${shadow.audit_chain_heads}`);
      heads = await loadHeads(
        client,
        shadow,
        r.rows.map((x) => x.tenant_id as string),
        false,
      );
    },
    stage(events) {
      // No signing during a rebuild: the checkpoints made live are kept and checked below.
      const chained = chainBatch(events, heads, { checkpointEvery: 0 });
      return (client, shadow) => writeChainedBatch(client, shadow, chained);
    },
    async beforeSwap(client, shadow) {
      const bad = await client.query(
        `select c.tenant_id, c.seq, c.position from audit_checkpoints c
           left join ${shadow.audit_events} a on a.tenant_id = c.tenant_id and a.global_position = c.position
          where a.tenant_id is null or a.chain_seq <> c.seq or a.hash <> c.hash
          order by c.tenant_id, c.seq limit 10`,
      );
      if (bad.rows.length) {
        throw new ChainMismatchError(
          `the rebuilt audit chain does not match ${bad.rows.length === 10 ? 'at least 10' : bad.rows.length} signed checkpoint(s): ` +
            `the event store differs from what was signed; the live audit trail is kept`,
          {
            checkpoints: bad.rows.map((r) => ({
              tenantId: r.tenant_id,
              seq: Number(r.seq),
              position: Number(r.position),
            })),
          },
        );
      }
      // The live projector continues signing from the last checkpoint it made.
      await client.query(
        `update ${shadow.audit_chain_heads} h set checkpoint_seq = c.seq, checkpoint_at = c.signed_at
           from (select distinct on (tenant_id) tenant_id, seq, signed_at from audit_checkpoints order by tenant_id, seq desc) c
          where h.tenant_id = c.tenant_id`,
      );
    },
  };
}

function dashboardApplier(): Applier {
  return {
    deferIndexes: [],
    // The projector locks dash_positions first (for update), then writes the rest.
    lockOrder: ['dash_positions', ...projectionTables.dashboard.filter((t) => t !== 'dash_positions')],
    prepare: async () => undefined,
    // The fold reads the rows the previous batch wrote: nothing to do ahead of the write.
    stage: (events) => async (client, shadow) => void (await applyDashboardBatch(client, shadow, events)),
    beforeSwap: async () => undefined,
  };
}

const LOCK_BASE = 0x6b65656c; // 'keel'

async function withTx<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('begin');
  try {
    const r = await fn();
    await client.query('commit');
    return r;
  } catch (e) {
    await client.query('rollback').catch(() => undefined);
    throw e;
  }
}

/**
 * Reads the log ahead of the writer: while one batch is being written, the next is being read
 * (the store has its own connections), which is most of a rebuild's speed.
 */
function prefetching(store: EventStore, after: number, batchSize: number) {
  let next: Promise<ReadAllResult> | undefined = store.readAll({ after, maxCount: batchSize });
  return {
    async take(): Promise<ReadAllResult> {
      const r = await next!;
      next = r.isEnd ? undefined : store.readAll({ after: r.position, maxCount: batchSize });
      return r;
    },
    /** After an end: look again from `after` (new events may have been appended meanwhile). */
    restart(from: number) {
      next = store.readAll({ after: from, maxCount: batchSize });
    },
    drain() {
      next?.catch(() => undefined);
      next = undefined;
    },
  };
}

export async function rebuildProjection(
  runtime: Pick<KeelRuntime, 'pool' | 'store' | 'logger'>,
  name: string,
  options: RebuildOptions = {},
): Promise<RebuildResult> {
  if (!isProjectionName(name)) throw new UnknownProjectionError(name);
  const projection = name;
  const batchSize = options.batchSize ?? 10_000;
  const indexMemoryMB = options.indexMemoryMB ?? rebuildIndexMemoryMB();
  const applier = projection === 'audit' ? auditApplier() : dashboardApplier();
  if (options.deferIndexes === false) applier.deferIndexes = [];
  const tables = projectionTables[projection];
  const shadow = tableNames(projection, SHADOW_SUFFIX);
  const log = runtime.logger.child({ projection, component: 'rebuild' });
  const client = await runtime.pool.connect();
  const lockKey = projection === 'audit' ? 1 : 2;
  let locked = false;
  try {
    const got = await client.query('select pg_try_advisory_lock($1, $2) as ok', [LOCK_BASE, lockKey]);
    if (!got.rows[0]?.ok) throw new RebuildBusyError(projection);
    locked = true;
    // Each batch commits with its position, so a commit lost in a crash loses its position too and
    // is replayed: no need to wait for the WAL flush of every batch.
    await client.query('set synchronous_commit = off');

    // Resume or start.
    const prev = await client.query('select status, position, events from projection_rebuilds where projection = $1', [
      projection,
    ]);
    let position = 0;
    let totalEvents = 0;
    let resumedFrom: number | undefined;
    let allShadowsExist = true;
    for (const t of tables) allShadowsExist &&= await shadowExists(client, t);
    // Anything but a finished rebuild leaves its shadows and position: carry on from there.
    if (prev.rows[0] && prev.rows[0].status !== 'done' && allShadowsExist) {
      position = Number(prev.rows[0].position);
      totalEvents = Number(prev.rows[0].events);
      resumedFrom = position;
      await client.query(
        `update projection_rebuilds set status = 'running', error = null, updated_at = now() where projection = $1`,
        [projection],
      );
      log.info({ position }, 'resuming an interrupted rebuild');
    } else {
      await withTx(client, async () => {
        for (const t of tables) await createShadow(client, t, !applier.deferIndexes.includes(t));
        await client.query(
          `insert into projection_rebuilds (projection, status, position, events, started_at, updated_at, finished_at, error)
           values ($1, 'running', 0, 0, now(), now(), null, null)
           on conflict (projection) do update set status = 'running', position = 0, events = 0, target_position = 0,
             started_at = now(), updated_at = now(), finished_at = null, error = null`,
          [projection],
        );
      });
    }
    await applier.prepare(client, shadow);

    const started = Date.now();
    let events = 0;
    let head = await runtime.store.headPosition();
    await client.query('update projection_rebuilds set target_position = $2 where projection = $1', [projection, head]);
    const progress = (phase: RebuildProgress['phase']) => {
      const secs = (Date.now() - started) / 1000;
      const rate = secs > 0 ? events / secs : 0;
      const remaining = Math.max(0, head - position);
      options.onProgress?.({
        projection,
        phase,
        events: totalEvents,
        position,
        headPosition: head,
        eventsPerSecond: Math.round(rate),
        // Positions are dense in the PostgreSQL store, so the distance in positions approximates events left.
        etaSeconds: rate > 0 ? remaining / rate : undefined,
      });
    };

    /** Writes a staged batch and its progress in one transaction (the caller opens it). */
    const writeBatch = async (batch: ReadAllResult, write: ReturnType<Applier['stage']>) => {
      if (batch.events.length) await write(client, shadow);
      await client.query(
        'update projection_rebuilds set position = $2, events = $3, updated_at = now() where projection = $1',
        [projection, batch.position, totalEvents + batch.events.length],
      );
      position = batch.position;
      events += batch.events.length;
      totalEvents += batch.events.length;
    };

    // Replay to the head, batch by batch, each batch with its progress in one transaction. Three
    // things overlap: the store reads batch n+2, this process chains batch n+1, the database writes n.
    const reader = prefetching(runtime.store, position, batchSize);
    let writing: Promise<void> | undefined;
    try {
      for (;;) {
        if (options.signal?.aborted) {
          await writing;
          throw new RebuildInterruptedError(projection, position);
        }
        const batch = await reader.take();
        const write = applier.stage(batch.events);
        await writing;
        writing = withTx(client, () => writeBatch(batch, write)).then(() => progress('replaying'));
        // Handled here so a failure while the next batch is read is not an unhandled rejection; awaited below.
        writing.catch(() => undefined);
        if (batch.isEnd) {
          await writing;
          const h = await runtime.store.headPosition();
          head = Math.max(head, h);
          // Close enough: the rest is caught up under the swap's lock.
          if (h - position <= batchSize) break;
          reader.restart(position);
        }
      }
      await writing;
    } finally {
      // A failed write rejects `writing`; it was already thrown above or is thrown here.
      await writing?.catch(() => undefined);
      reader.drain();
    }

    progress('indexing');
    if (applier.deferIndexes.length) {
      // A second session builds indexes alongside this one (see createShadowIndexes).
      const helper = await runtime.pool.connect();
      try {
        for (const t of applier.deferIndexes) {
          await createShadowIndexes([client, helper], t, { memoryMB: indexMemoryMB });
        }
      } finally {
        helper.release();
      }
    }

    for (const t of applier.lockOrder) await analyzeShadow(client, t);

    progress('swapping');
    await withTx(client, async () => {
      await client.query(`lock table ${applier.lockOrder.join(', ')} in exclusive mode`);
      for (;;) {
        const batch = await runtime.store.readAll({ after: position, maxCount: batchSize });
        await writeBatch(batch, applier.stage(batch.events));
        if (batch.isEnd) break;
      }
      await applier.beforeSwap(client, shadow);
      for (const t of applier.lockOrder) await swapShadow(client, t);
      await client.query(
        `update projection_rebuilds set status = 'done', position = $2, events = $3, updated_at = now(), finished_at = now() where projection = $1`,
        [projection, position, totalEvents],
      );
    });
    head = Math.max(head, position);
    progress('done');
    const durationMs = Date.now() - started;
    const result: RebuildResult = {
      projection,
      events,
      totalEvents,
      position,
      durationMs,
      eventsPerSecond: durationMs > 0 ? Math.round((events * 1000) / durationMs) : events,
      ...(resumedFrom !== undefined ? { resumedFrom } : {}),
    };
    log.info(result, 'rebuild swapped in');
    return result;
  } catch (e) {
    if (locked && !(e instanceof RebuildInterruptedError)) {
      const message = e instanceof Error ? e.message : String(e);
      await client
        .query(
          `update projection_rebuilds set status = 'failed', error = $2, updated_at = now() where projection = $1 and status = 'running'`,
          [projection, message.slice(0, 2000)],
        )
        .catch(() => undefined);
      if (e instanceof ChainMismatchError) {
        // The shadows prove nothing anyone should swap in; keep the live model, drop the copies.
        for (const t of tables) await dropShadow(client, t).catch(() => undefined);
      }
    }
    throw e;
  } finally {
    if (locked) await client.query('select pg_advisory_unlock($1, $2)', [LOCK_BASE, lockKey]).catch(() => undefined);
    await client.query('reset synchronous_commit').catch(() => undefined);
    client.release();
  }
}

/** The last or current rebuild of each projection (for the admin route and the CLI). */
export async function rebuildStatus(pool: pg.Pool): Promise<Record<string, unknown>[]> {
  const r = await pool.query(
    `select projection, status, position, target_position, events, started_at, updated_at, finished_at, error
       from projection_rebuilds order by projection`,
  );
  return r.rows.map((x) => ({
    projection: x.projection,
    status: x.status,
    position: Number(x.position),
    targetPosition: Number(x.target_position),
    events: Number(x.events),
    startedAt: (x.started_at as Date).toISOString(),
    updatedAt: (x.updated_at as Date).toISOString(),
    finishedAt: x.finished_at ? (x.finished_at as Date).toISOString() : null,
    error: x.error ?? null,
  }));
}
