/**
 * Per-key token buckets, in process memory. A request needs a positive balance to start; its
 * cost may push the balance below zero (an ingest request's record count is only known once
 * it is read), and the debt is paid back at `ratePerSecond` before the key may call again:
 * `Retry-After` says when.
 *
 * Per process: with N command-service replicas a key gets up to N times the rate.
 */
export interface RateLimiterOptions {
  ratePerSecond: number;
  burst: number;
  now?: () => number;
}

export interface RateLimiter {
  /** 0 when the key may go ahead, else the seconds to wait (≥ 1). */
  retryAfter(key: string): number;
  /** Takes `cost` tokens (may go negative). */
  charge(key: string, cost: number): void;
  /** `retryAfter`, then `charge(1)` when allowed. */
  take(key: string): number;
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const now = options.now ?? Date.now;
  const buckets = new Map<string, { tokens: number; at: number }>();
  let lastSweep = now();

  function bucket(key: string) {
    const t = now();
    if (t - lastSweep > 60_000) {
      // Full buckets carry no information: forget them.
      for (const [k, b] of buckets) if (b.tokens + ((t - b.at) / 1000) * options.ratePerSecond >= options.burst) buckets.delete(k);
      lastSweep = t;
    }
    let b = buckets.get(key);
    if (!b) {
      b = { tokens: options.burst, at: t };
      buckets.set(key, b);
    } else {
      b.tokens = Math.min(options.burst, b.tokens + ((t - b.at) / 1000) * options.ratePerSecond);
      b.at = t;
    }
    return b;
  }

  const retryAfter = (key: string) => {
    const b = bucket(key);
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / options.ratePerSecond));
  };
  const charge = (key: string, cost: number) => {
    bucket(key).tokens -= cost;
  };
  return {
    retryAfter,
    charge,
    take: (key) => {
      const wait = retryAfter(key);
      if (wait === 0) charge(key, 1);
      return wait;
    },
  };
}
