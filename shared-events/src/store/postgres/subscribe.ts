import type pg from 'pg';
import type { Logger } from 'pino';
import { KeelError, ValidationError } from '../../errors.ts';
import type { ReadAllOptions, ReadAllResult, SubscribeOptions, Subscription, SubscriptionHandler } from '../port.ts';
import { isUnavailable } from './errors.ts';

/**
 * Catch-up then live subscriptions over readAll. When caught up a subscription sleeps until
 * woken or until its poll interval passes. Wake-ups come from appends in this process
 * (immediately after their commit) and, across processes, from PostgreSQL LISTEN/NOTIFY.
 *
 * NOTIFY is sent after the append committed, from its own statement and coalesced (at most one
 * in flight): a NOTIFY inside the append transaction would take PostgreSQL's global notify lock
 * at commit and serialize every appending transaction's commit.
 */

export const NOTIFY_CHANNEL = 'keel_events';

export interface WakeHub {
  /** Registers a sleeper; returns the unregister function. */
  add(wake: () => void): () => void;
  wakeAll(): void;
  size(): number;
}

export function createWakeHub(): WakeHub {
  const sleepers = new Set<() => void>();
  return {
    add(wake) {
      sleepers.add(wake);
      return () => sleepers.delete(wake);
    },
    wakeAll() {
      for (const w of [...sleepers]) w();
    },
    size: () => sleepers.size,
  };
}

/**
 * Sends `NOTIFY keel_events` after commits: the first at once, then at most one per
 * `minGapMs`, covering every commit in between. A NOTIFY is a transaction of its own, with a
 * commit record to flush: one per append would double the fsyncs of single-event appends.
 */
export function createNotifier(pool: pg.Pool, logger?: Logger, minGapMs = 10) {
  let pending = false;
  let running: Promise<void> | undefined;
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
  async function flush(): Promise<void> {
    while (pending) {
      pending = false;
      try {
        await pool.query(`select pg_notify('${NOTIFY_CHANNEL}', '')`);
      } catch (err) {
        // Only latency is lost: subscribers elsewhere still poll.
        logger?.warn({ err: (err as Error).message }, 'event store: NOTIFY failed');
      }
      await sleep(minGapMs); // commits meanwhile set pending and ride on the next one
    }
  }
  return {
    schedule(): void {
      pending = true;
      running ??= flush().finally(() => (running = undefined));
    },
    async idle(): Promise<void> {
      while (running) await running;
    },
  };
}

/**
 * One LISTEN connection per store, held while subscriptions exist; reconnects with backoff.
 * If it cannot connect, subscriptions keep polling.
 */
export function createListener(pool: pg.Pool, hub: WakeHub, logger?: Logger) {
  let client: pg.PoolClient | undefined;
  let wanted = false;
  let connecting: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;

  const onNotification = () => hub.wakeAll();
  const onError = (err: Error) => {
    logger?.warn({ err: err.message }, 'event store: LISTEN connection lost');
    const c = client;
    client = undefined;
    c?.release(err);
    scheduleReconnect();
  };

  function scheduleReconnect(): void {
    if (!wanted || retryTimer) return;
    const delay = Math.min(5000, 100 * 2 ** Math.min(failures, 6));
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void connect();
    }, delay);
    retryTimer.unref();
  }

  async function connect(): Promise<void> {
    if (!wanted || client || connecting) return;
    connecting = (async () => {
      let c: pg.PoolClient | undefined;
      try {
        c = await pool.connect();
        c.on('notification', onNotification);
        c.on('error', onError);
        await c.query(`listen ${NOTIFY_CHANNEL}`);
        failures = 0;
        if (!wanted) {
          // stopped while connecting: leave nothing listening on a pooled connection
          c.removeListener('notification', onNotification);
          c.removeListener('error', onError);
          await c.query(`unlisten ${NOTIFY_CHANNEL}`).then(
            () => c!.release(),
            (err: Error) => c!.release(err),
          );
          return;
        }
        client = c;
        hub.wakeAll(); // whatever was notified while we were not listening
      } catch (err) {
        failures++;
        c?.removeListener('notification', onNotification);
        c?.removeListener('error', onError);
        c?.release(err as Error);
        logger?.warn({ err: (err as Error).message }, 'event store: LISTEN failed, polling only');
        scheduleReconnect();
      }
    })().finally(() => (connecting = undefined));
    await connecting;
  }

  return {
    start(): void {
      wanted = true;
      void connect();
    },
    async stop(): Promise<void> {
      wanted = false;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
      await connecting;
      const c = client;
      client = undefined;
      if (c) {
        c.removeListener('notification', onNotification);
        c.removeListener('error', onError);
        // UNLISTEN before the connection goes back to the pool, or it keeps receiving.
        await c.query(`unlisten ${NOTIFY_CHANNEL}`).then(
          () => c.release(),
          (err: Error) => c.release(err),
        );
      }
    },
  };
}

export interface SubscriptionDeps {
  /** `pending`: events are committed but not yet safe to read (see read.ts readAllDetailed). */
  readAll(options: ReadAllOptions): Promise<ReadAllResult & { pending?: boolean }>;
  hub: WakeHub;
  /** Called when the subscription starts and when it ends (to hold the LISTEN connection). */
  onStart(): void;
  onEnd(): void;
  logger?: Logger;
}

/** Transient store failures a subscription rides out before giving up (about 30 s of backoff). */
const MAX_CONSECUTIVE_FAILURES = 10;

export function subscribe(deps: SubscriptionDeps, options: SubscribeOptions, handler: SubscriptionHandler): Subscription {
  const after = options.after ?? 0;
  if (!Number.isSafeInteger(after) || after < 0) throw new ValidationError('after must be a whole number >= 0', 'after');
  const batchSize = options.batchSize ?? 500;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new ValidationError('batchSize must be a whole number >= 1', 'batchSize');
  const pollMs = options.pollIntervalMs ?? 50;
  if (!(pollMs > 0)) throw new ValidationError('pollIntervalMs must be > 0', 'pollIntervalMs');
  if (typeof handler !== 'function') throw new ValidationError('handler must be a function', 'handler');

  let stopped = false;
  let wakeNow: (() => void) | undefined;
  let woken = false; // a wake-up that came while we were reading, not sleeping
  const unregister = deps.hub.add(() => {
    woken = true;
    wakeNow?.();
  });

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopped || woken) return resolve();
      const timer = setTimeout(finish, ms);
      function finish() {
        clearTimeout(timer);
        wakeNow = undefined;
        resolve();
      }
      wakeNow = finish;
    });

  deps.onStart();
  const done = (async () => {
    let position = after;
    let caughtUp = false;
    let failures = 0;
    let pendingDelay = 5;
    try {
      while (!stopped) {
        woken = false;
        let batch: ReadAllResult & { pending?: boolean };
        try {
          batch = await deps.readAll({ after: position, maxCount: batchSize, filter: options.filter });
          failures = 0;
        } catch (err) {
          // The database restarting or a connection dropping should not end a subscription.
          if (!isUnavailable(err) && !(err instanceof KeelError && err.code === 'UNAVAILABLE')) throw err;
          if (++failures > MAX_CONSECUTIVE_FAILURES) throw err;
          deps.logger?.warn({ err: (err as Error).message, failures }, 'event store subscription: read failed, retrying');
          await sleep(Math.min(5000, 100 * 2 ** failures));
          continue;
        }
        if (batch.events.length > 0 && !stopped) {
          await handler(batch.events, { position: batch.position, isLive: caughtUp });
        }
        position = batch.position;
        if (batch.isEnd) {
          caughtUp = true;
          if (batch.pending && batch.events.length === 0) {
            // Committed events wait behind an older open transaction: look again soon rather
            // than after a full poll interval (their wake-up has been spent), backing off while
            // that transaction lasts.
            await sleep(Math.min(pollMs, pendingDelay));
            pendingDelay = Math.min(pendingDelay * 2, 1000);
          } else {
            pendingDelay = 5;
            await sleep(batch.pending ? Math.min(pollMs, pendingDelay) : pollMs);
          }
        } else {
          pendingDelay = 5;
        }
      }
    } finally {
      unregister();
      deps.onEnd();
    }
  })();
  // The caller sees failures through `done`; this keeps an unobserved failure from crashing
  // the process as an unhandled rejection, and logs it instead.
  done.catch((err: unknown) => deps.logger?.error({ err: (err as Error).message }, 'event store subscription failed'));

  return {
    done,
    async stop() {
      stopped = true;
      wakeNow?.();
      await done.catch(() => undefined);
    },
  };
}
