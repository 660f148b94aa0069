import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { EventStore } from '@keel/shared-events';
import { createBreakerRegistry, type BreakerRegistry, type BreakerSnapshot, type BreakerState } from './breaker.ts';
import type { RunnerConfig } from './config.ts';
import type { HttpClient } from './http/client.ts';
import { createKeyedLimiter, type KeyedLimiter } from './limiter.ts';
import type { RunnerMetrics } from './metrics.ts';

/** Decrypts a tenant secret (connector credentials, webhook signing secrets). What it returns is never logged. */
export type SecretOpener = (tenantId: string, value: string) => Promise<string>;

/** What both runners share in one process: one HTTP pool, one breaker and one limit per destination. */
export interface RunnerServices {
  pool: pg.Pool;
  store: EventStore;
  logger: Logger;
  config: RunnerConfig;
  http: HttpClient;
  breakers: BreakerRegistry;
  limiter: KeyedLimiter;
  openSecret: SecretOpener;
  /** Names this process in logs. */
  instanceId: string;
  metrics: RunnerMetrics;
}

export function newInstanceId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

/** Open circuits survive a restart: a runner that comes back does not hammer a destination it had just given up on. */
export async function loadBreakers(
  pool: pg.Pool,
  config: RunnerConfig,
  logger: Logger,
  metrics: RunnerMetrics,
): Promise<BreakerRegistry> {
  const { rows } = await pool.query<{
    destination: string;
    state: BreakerState;
    consecutive_failures: number;
    open_until: Date | null;
    open_ms: number;
  }>(
    `select destination, state, consecutive_failures, open_until, open_ms from keel_runner_breakers where state <> 'closed'`,
  );
  const restore = new Map<string, BreakerSnapshot>(
    rows.map((r) => [
      r.destination,
      {
        state: r.state === 'half_open' ? 'open' : r.state,
        consecutiveFailures: r.consecutive_failures,
        openUntil: r.open_until?.getTime() ?? 0,
        openMs: r.open_ms,
      },
    ]),
  );
  const counts: Record<BreakerState, number> = { closed: 0, open: 0, half_open: 0 };
  for (const s of restore.values()) counts[s.state]++;
  for (const [state, n] of Object.entries(counts)) metrics.circuits.set({ state }, n);
  let persisted: Promise<void> = Promise.resolve();
  return createBreakerRegistry(
    config.breaker,
    (destination, from, to, snap) => {
      metrics.circuits.dec({ state: from });
      metrics.circuits.inc({ state: to });
      // The destination names a tenant and an origin, never a path or credentials.
      logger.warn(
        { tenantId: destination.split('|')[0], destination, from, to, consecutiveFailures: snap.consecutiveFailures },
        'circuit state changed',
      );
      // Transitions are written one after another: two in flight at once could land out of order
      // and leave a closed circuit recorded as half-open.
      persisted = persisted.then(() =>
        pool
          .query(
            `insert into keel_runner_breakers (destination, state, consecutive_failures, open_until, open_ms) values ($1, $2, $3, $4, $5)
           on conflict (destination) do update set state = excluded.state, consecutive_failures = excluded.consecutive_failures,
             open_until = excluded.open_until, open_ms = excluded.open_ms, updated_at = now()`,
            [destination, to, snap.consecutiveFailures, snap.openUntil ? new Date(snap.openUntil) : null, snap.openMs],
          )
          .then(
            () => undefined,
            (err: Error) => logger.error({ destination, err: err.message }, 'could not persist circuit state'),
          ),
      );
    },
    restore,
  );
}

export function createLimiter(config: RunnerConfig): KeyedLimiter {
  return createKeyedLimiter(config.perDestination);
}

export type GuardResult<T> =
  { ran: true; value: T } | { ran: false; retryAt: number; reason: 'circuit_open' | 'destination_busy' };

/**
 * Calls a destination under its concurrency limit and circuit breaker. A busy destination gets an
 * in-memory queue (a burst to one fast endpoint should not go back to the database); past it the
 * work is deferred, so a slow destination never holds the runner's capacity. The breaker is
 * asked only once a slot is free, so work queued behind calls that opened the circuit is deferred
 * at once instead of being sent to a destination known to be down.
 */
export function guardedCall(services: Pick<RunnerServices, 'breakers' | 'limiter' | 'config' | 'metrics'>) {
  const { config } = services;
  // How long a queued call may wait must stay well inside the lease, or its work would be taken
  // over while still queued. The queue a destination gets is sized from its observed latency
  // (an EWMA; a destination not yet seen is assumed to answer in 100 ms): a fast endpoint can
  // queue up to the runner's whole in-flight capacity, a slow one a few rounds. Deferring work for
  // a destination that is merely busy costs two database writes and buys nothing, so it is kept
  // for destinations whose queue would outlast the lease.
  const assumedMs = Math.min(100, Math.max(config.webhookTimeoutMs, config.stepTimeoutMs));
  const latency = new Map<string, number>();
  const maxWaiting = (destination: string): number => {
    const ms = Math.max(1, latency.get(destination) ?? assumedMs);
    const rounds = Math.max(2, Math.floor(config.leaseMs / 4 / ms));
    return Math.min(Math.max(config.perDestination, config.maxInFlight), config.perDestination * rounds);
  };
  const observe = (destination: string, ms: number): void => {
    const prev = latency.get(destination);
    latency.set(destination, prev === undefined ? ms : prev * 0.8 + ms * 0.2);
    if (latency.size > 50_000) latency.clear();
  };
  return async <T>(
    destination: string,
    call: () => Promise<{ value: T; healthy: boolean }>,
  ): Promise<GuardResult<T>> => {
    let release = services.limiter.tryAcquire(destination);
    if (!release) {
      if (services.limiter.waiting(destination) >= maxWaiting(destination)) {
        services.metrics.deferred.inc({ reason: 'destination_busy' });
        return { ran: false, retryAt: Date.now() + 250 + Math.floor(Math.random() * 250), reason: 'destination_busy' };
      }
      release = await services.limiter.acquire(destination);
    }
    try {
      const breaker = services.breakers.get(destination);
      const permit = breaker.tryAcquire(Date.now());
      if (!permit.allowed) {
        services.metrics.deferred.inc({ reason: 'circuit_open' });
        // Spread the waiting work over a short window so the probe is not followed by a stampede.
        return { ran: false, retryAt: permit.retryAt + Math.floor(Math.random() * 500), reason: 'circuit_open' };
      }
      const started = performance.now();
      try {
        const { value, healthy } = await call();
        observe(destination, performance.now() - started);
        if (healthy) breaker.success(Date.now(), permit);
        else breaker.failure(Date.now(), permit);
        return { ran: true, value };
      } catch (e) {
        observe(destination, performance.now() - started);
        breaker.failure(Date.now(), permit);
        throw e;
      }
    } finally {
      release();
    }
  };
}
