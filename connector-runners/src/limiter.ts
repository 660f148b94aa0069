/**
 * Concurrency limit per destination: at most `perKey` calls to one destination at a time, so one
 * slow destination cannot take every connection, and no destination is flooded. The runner asks
 * with `tryAcquire` and, when the destination is full, puts the work back on the schedule instead
 * of queueing it in memory behind the slow one (that is what keeps other tenants fast).
 */
export interface KeyedLimiter {
  /** A release function, or undefined when `key` is at its limit. Release exactly once. */
  tryAcquire(key: string): (() => void) | undefined;
  /** Waits for a slot (in FIFO order per key). */
  acquire(key: string): Promise<() => void>;
  active(key: string): number;
  /** Callers waiting in `acquire` for `key`. */
  waiting(key: string): number;
  /** Total calls in flight over all keys. */
  totalActive(): number;
}

export function createKeyedLimiter(perKey: number): KeyedLimiter {
  if (!Number.isInteger(perKey) || perKey < 1) throw new Error(`perKey must be a positive integer, got ${perKey}`);
  const active = new Map<string, number>();
  const waiting = new Map<string, (() => void)[]>();
  let total = 0;

  const releaser = (key: string): (() => void) => {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const queue = waiting.get(key);
      const next = queue?.shift();
      if (queue && queue.length === 0) waiting.delete(key);
      if (next) {
        next(); // the slot passes straight to the next waiter
        return;
      }
      total--;
      const n = (active.get(key) ?? 1) - 1;
      if (n <= 0) active.delete(key);
      else active.set(key, n);
    };
  };
  const take = (key: string): (() => void) | undefined => {
    const n = active.get(key) ?? 0;
    if (n >= perKey) return undefined;
    active.set(key, n + 1);
    total++;
    return releaser(key);
  };

  return {
    tryAcquire: take,
    acquire(key) {
      const r = take(key);
      if (r) return Promise.resolve(r);
      return new Promise((resolve) => {
        const queue = waiting.get(key) ?? [];
        queue.push(() => resolve(releaser(key)));
        waiting.set(key, queue);
      });
    },
    active: (key) => active.get(key) ?? 0,
    waiting: (key) => waiting.get(key)?.length ?? 0,
    totalActive: () => total,
  };
}
