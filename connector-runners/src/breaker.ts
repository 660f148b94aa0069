/**
 * A circuit breaker per destination: after `failureThreshold` consecutive failures the circuit
 * opens and calls are refused (and rescheduled by the caller) without touching the destination;
 * after `openMs` it goes half-open and lets a few probes through; enough probe successes close
 * it, a probe failure opens it again for longer (doubling up to `maxOpenMs`).
 *
 * Pure: time is passed in, so tests drive it without sleeping.
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerOptions {
  failureThreshold: number;
  openMs: number;
  maxOpenMs: number;
  /** Probes allowed at once while half-open. */
  halfOpenProbes: number;
  /** Probe successes needed to close again. */
  closeAfterSuccesses: number;
}

export const defaultBreakerOptions: BreakerOptions = {
  failureThreshold: 5,
  openMs: 5_000,
  maxOpenMs: 5 * 60_000,
  halfOpenProbes: 1,
  closeAfterSuccesses: 1,
};

export interface BreakerSnapshot {
  state: BreakerState;
  consecutiveFailures: number;
  /** When an open circuit lets the next probe through (epoch ms); 0 when not open. */
  openUntil: number;
  /** Length of the current/next open period. */
  openMs: number;
}

export type Permit = { allowed: true; probe: boolean } | { allowed: false; retryAt: number };

export interface CircuitBreaker {
  readonly key: string;
  state(now: number): BreakerState;
  /** Ask to call the destination; a granted permit must be settled with success, failure or cancel. */
  tryAcquire(now: number): Permit;
  success(now: number, permit: Permit): void;
  failure(now: number, permit: Permit): void;
  /** The permitted call was not made after all (deferred, shutting down). */
  cancel(permit: Permit): void;
  snapshot(): BreakerSnapshot;
}

export function createCircuitBreaker(
  key: string,
  options: BreakerOptions = defaultBreakerOptions,
  onTransition?: (key: string, from: BreakerState, to: BreakerState, snapshot: BreakerSnapshot) => void,
  initial?: BreakerSnapshot,
): CircuitBreaker {
  let state: BreakerState = initial?.state ?? 'closed';
  let consecutiveFailures = initial?.consecutiveFailures ?? 0;
  let openUntil = initial?.openUntil ?? 0;
  let openMs = initial?.openMs ?? options.openMs;
  let probesInFlight = 0;
  let probeSuccesses = 0;

  const snapshot = (): BreakerSnapshot => ({ state, consecutiveFailures, openUntil, openMs });
  const move = (to: BreakerState): void => {
    if (to === state) return;
    const from = state;
    state = to;
    onTransition?.(key, from, to, snapshot());
  };
  const open = (now: number): void => {
    openUntil = now + openMs;
    probesInFlight = 0;
    probeSuccesses = 0;
    move('open');
  };

  return {
    key,
    state: (now) => (state === 'open' && now >= openUntil ? 'half_open' : state),
    tryAcquire(now) {
      if (state === 'open') {
        if (now < openUntil) return { allowed: false, retryAt: openUntil };
        probesInFlight = 0;
        probeSuccesses = 0;
        move('half_open');
      }
      if (state === 'half_open') {
        if (probesInFlight >= options.halfOpenProbes) return { allowed: false, retryAt: now + Math.min(openMs, 1_000) };
        probesInFlight++;
        return { allowed: true, probe: true };
      }
      return { allowed: true, probe: false };
    },
    success(_now, permit) {
      if (!permit.allowed) return;
      consecutiveFailures = 0;
      if (permit.probe && state === 'half_open') {
        probesInFlight = Math.max(0, probesInFlight - 1);
        if (++probeSuccesses >= options.closeAfterSuccesses) {
          openMs = options.openMs;
          openUntil = 0;
          move('closed');
        }
      }
    },
    failure(now, permit) {
      if (!permit.allowed) return;
      consecutiveFailures++;
      if (permit.probe && state === 'half_open') {
        // The destination is still down: stay away longer before the next probe.
        openMs = Math.min(options.maxOpenMs, openMs * 2);
        open(now);
        return;
      }
      if (state === 'closed' && consecutiveFailures >= options.failureThreshold) open(now);
    },
    cancel(permit) {
      if (permit.allowed && permit.probe && state === 'half_open') probesInFlight = Math.max(0, probesInFlight - 1);
    },
    snapshot,
  };
}

export interface BreakerRegistry {
  get(key: string): CircuitBreaker;
  /** Breakers that are not closed, for metrics and persistence. */
  entries(): CircuitBreaker[];
}

export function createBreakerRegistry(
  options: BreakerOptions = defaultBreakerOptions,
  onTransition?: (key: string, from: BreakerState, to: BreakerState, snapshot: BreakerSnapshot) => void,
  restore?: Map<string, BreakerSnapshot>,
): BreakerRegistry {
  const breakers = new Map<string, CircuitBreaker>();
  return {
    get(key) {
      let b = breakers.get(key);
      if (!b) {
        b = createCircuitBreaker(key, options, onTransition, restore?.get(key));
        breakers.set(key, b);
      }
      return b;
    },
    entries: () => [...breakers.values()],
  };
}
