import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';

/**
 * A lease row in keel_bus_checkpoints that makes one worker the only active one for a name
 * (the relay of a store, a consumer group of the PostgreSQL bus) and carries its checkpoint.
 *
 * Why a lease row and not an advisory lock: the row carries a fencing token, so a checkpoint write
 * is conditional on still holding the lease (a paused, presumed-dead holder that wakes up cannot move
 * the checkpoint back or forward), and expiry is decided by the database clock alone. A holder that
 * dies (SIGKILL) is replaced once its lease expires (ttlMs).
 */
export interface LeaseOptions {
  pool: pg.Pool;
  name: string;
  /** Unique per process/worker; default `<host>:<pid>:<random>`. */
  holder?: string;
  /** Default 10 s. A dead holder is replaced after at most this long. */
  ttlMs?: number;
  /** Called once when the lease is found lost (taken over, or not renewed in time). */
  onLost?: (reason: string) => void;
}

export interface LeaseState {
  /** The checkpoint stored with the lease (0 for a new name). */
  position: number;
  fencing: number;
}

export interface Lease {
  readonly name: string;
  readonly holder: string;
  readonly ttlMs: number;
  /** One attempt: the state when this worker now holds the lease, undefined when another live holder has it. */
  tryAcquire(): Promise<LeaseState | undefined>;
  /** Waits (polling) until the lease is ours, or until `signal` aborts (then undefined). Starts renewing. */
  acquire(signal?: AbortSignal): Promise<LeaseState | undefined>;
  /** Stores the checkpoint (and renews); false when the lease was lost, in which case nothing is written. */
  checkpoint(position: number): Promise<boolean>;
  isHeld(): boolean;
  /** Gives the lease up so a standby takes over at once; the checkpoint stays. */
  release(): Promise<void>;
}

export function defaultHolderId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

export function createLease(options: LeaseOptions): Lease {
  const { pool, name } = options;
  const holder = options.holder ?? defaultHolderId();
  const ttlMs = options.ttlMs ?? 10_000;
  let fencing: number | undefined;
  let lastRenewedAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let lostReported = false;

  const lost = (reason: string) => {
    if (fencing === undefined) return;
    fencing = undefined;
    if (timer) clearInterval(timer);
    timer = undefined;
    if (!lostReported) {
      lostReported = true;
      options.onLost?.(reason);
    }
  };

  const renew = async () => {
    const token = fencing;
    if (token === undefined) return;
    try {
      const r = await pool.query(
        `update keel_bus_checkpoints set lease_expires_at = now() + $4 * interval '1 millisecond'
          where name = $1 and holder = $2 and fencing = $3`,
        [name, holder, token, ttlMs],
      );
      if (fencing !== token) return;
      if (r.rowCount === 1) lastRenewedAt = performance.now();
      else lost('taken over by another holder');
    } catch {
      // The database is unreachable: past our own expiry we must assume a standby took over.
      if (fencing === token && performance.now() - lastRenewedAt > ttlMs) lost('lease not renewed within its ttl');
    }
  };

  const tryAcquire = async (): Promise<LeaseState | undefined> => {
    const r = await pool.query<{ position: string; fencing: string }>(
      `insert into keel_bus_checkpoints as c (name, holder, fencing, lease_expires_at)
       values ($1, $2, 1, now() + $3 * interval '1 millisecond')
       on conflict (name) do update
         set holder = excluded.holder, fencing = c.fencing + 1,
             lease_expires_at = excluded.lease_expires_at, updated_at = now()
         where c.holder is null or c.lease_expires_at < now() or c.holder = excluded.holder
       returning position, fencing`,
      [name, holder, ttlMs],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    fencing = Number(row.fencing);
    lastRenewedAt = performance.now();
    lostReported = false;
    if (timer) clearInterval(timer);
    timer = setInterval(() => void renew(), Math.max(50, Math.floor(ttlMs / 3)));
    timer.unref();
    return { position: Number(row.position), fencing };
  };

  return {
    name,
    holder,
    ttlMs,
    tryAcquire,
    acquire: async (signal) => {
      const pollMs = Math.max(50, Math.min(1000, Math.floor(ttlMs / 4)));
      while (!signal?.aborted) {
        try {
          const state = await tryAcquire();
          if (state) return state;
        } catch {
          // database briefly unavailable: keep waiting
        }
        await sleep(pollMs, signal);
      }
      return undefined;
    },
    checkpoint: async (position) => {
      const token = fencing;
      if (token === undefined) return false;
      // Without waiting for the WAL flush: a checkpoint lost in a database crash (the last few
      // hundred ms of them) only delivers the batches after the previous one again, which
      // at-least-once delivery allows and every consumer absorbs (projectors by position, runners
      // by idempotency keys). Waiting for the flush put a disk sync into every relay/bus cycle,
      // between one batch and the next: end-to-end latency.
      const r = await pool.query(
        `update keel_bus_checkpoints
            set position = $4, lease_expires_at = now() + $5 * interval '1 millisecond', updated_at = now()
          where name = $1 and holder = $2 and fencing = $3
            and (select set_config('synchronous_commit', 'off', true)) = 'off'`,
        [name, holder, token, position, ttlMs],
      );
      if (r.rowCount === 1) {
        lastRenewedAt = performance.now();
        return true;
      }
      lost('taken over by another holder');
      return false;
    },
    isHeld: () => fencing !== undefined,
    release: async () => {
      const token = fencing;
      if (timer) clearInterval(timer);
      timer = undefined;
      fencing = undefined;
      if (token === undefined) return;
      await pool.query(
        `update keel_bus_checkpoints set holder = null, lease_expires_at = null
          where name = $1 and holder = $2 and fencing = $3`,
        [name, holder, token],
      );
    },
  };
}

/** Reads a checkpoint without taking the lease (metrics, tests, operators). */
export async function readCheckpoint(
  pool: pg.Pool,
  name: string,
): Promise<{ position: number; holder: string | null; leaseExpiresAt: Date | null } | undefined> {
  const r = await pool.query<{ position: string; holder: string | null; lease_expires_at: Date | null }>(
    'select position, holder, lease_expires_at from keel_bus_checkpoints where name = $1',
    [name],
  );
  const row = r.rows[0];
  return row ? { position: Number(row.position), holder: row.holder, leaseExpiresAt: row.lease_expires_at } : undefined;
}
