import { describe, expect, it } from 'vitest';
import { backoffDelay, decideRetry, parseRetryAfter, type BackoffPolicy } from '../src/retry/backoff.ts';
import { createCircuitBreaker, createBreakerRegistry, type BreakerOptions } from '../src/breaker.ts';
import { createKeyedLimiter } from '../src/limiter.ts';

const policy: BackoffPolicy = { baseMs: 1000, maxMs: 60_000, factor: 2, maxAttempts: 5 };

describe('backoff with jitter', () => {
  it('grows exponentially and stays within [half, full] of the exponential delay', () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const full = Math.min(60_000, 1000 * 2 ** (attempt - 1));
      expect(backoffDelay(policy, attempt, () => 0)).toBe(full / 2);
      expect(backoffDelay(policy, attempt, () => 0.999999)).toBe(Math.round(full / 2 + 0.999999 * (full / 2)));
    }
  });

  it('spreads retries of the same attempt (jitter)', () => {
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(policy, 4)));
    expect(seen.size).toBeGreaterThan(10);
    for (const d of seen) {
      expect(d).toBeGreaterThanOrEqual(4000);
      expect(d).toBeLessThanOrEqual(8000);
    }
  });

  it('gives up after maxAttempts', () => {
    expect(decideRetry(policy, 4, { random: () => 0 })).toEqual({ retry: true, delayMs: 4000 });
    expect(decideRetry(policy, 5)).toEqual({ retry: false, reason: 'gave up after 5 attempts' });
  });

  it('honours a longer Retry-After, capped at maxMs, and ignores a shorter one', () => {
    expect(decideRetry(policy, 1, { retryAfterMs: 30_000, random: () => 0 })).toEqual({ retry: true, delayMs: 30_000 });
    expect(decideRetry(policy, 1, { retryAfterMs: 3_600_000, random: () => 0 })).toEqual({
      retry: true,
      delayMs: 60_000,
    });
    expect(decideRetry(policy, 3, { retryAfterMs: 10, random: () => 0 })).toEqual({ retry: true, delayMs: 2000 });
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    expect(parseRetryAfter('7', now)).toBe(7000);
    expect(parseRetryAfter('Wed, 01 May 2024 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 01 May 2024 11:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter(['3', '9'], now)).toBe(3000);
  });
});

describe('circuit breaker', () => {
  const opts: BreakerOptions = {
    failureThreshold: 3,
    openMs: 1000,
    maxOpenMs: 8000,
    halfOpenProbes: 1,
    closeAfterSuccesses: 1,
  };

  it('opens after consecutive failures, refuses until openMs, then lets one probe through', () => {
    const transitions: string[] = [];
    const b = createCircuitBreaker('d', opts, (_k, from, to) => transitions.push(`${from}->${to}`));
    let t = 0;
    for (let i = 0; i < 3; i++) b.failure(t, b.tryAcquire(t));
    expect(b.state(t)).toBe('open');
    expect(b.tryAcquire(500)).toEqual({ allowed: false, retryAt: 1000 });
    t = 1000;
    const probe = b.tryAcquire(t);
    expect(probe).toEqual({ allowed: true, probe: true });
    // a second caller while the probe is out is refused
    expect(b.tryAcquire(t).allowed).toBe(false);
    b.success(t, probe);
    expect(b.state(t)).toBe('closed');
    expect(transitions).toEqual(['closed->open', 'open->half_open', 'half_open->closed']);
  });

  it('a success resets the failure count while closed', () => {
    const b = createCircuitBreaker('d', opts);
    b.failure(0, b.tryAcquire(0));
    b.failure(0, b.tryAcquire(0));
    b.success(0, b.tryAcquire(0));
    b.failure(0, b.tryAcquire(0));
    b.failure(0, b.tryAcquire(0));
    expect(b.state(0)).toBe('closed');
  });

  it('a failed probe reopens for twice as long, up to maxOpenMs', () => {
    const b = createCircuitBreaker('d', opts);
    for (let i = 0; i < 3; i++) b.failure(0, b.tryAcquire(0));
    let t = 1000;
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const p = b.tryAcquire(t);
      expect(p.allowed).toBe(true);
      b.failure(t, p);
      const refused = b.tryAcquire(t);
      if (refused.allowed) throw new Error('should be open');
      waits.push(refused.retryAt - t);
      t = refused.retryAt;
    }
    expect(waits).toEqual([2000, 4000, 8000, 8000, 8000]);
  });

  it('a cancelled probe frees the slot', () => {
    const b = createCircuitBreaker('d', opts);
    for (let i = 0; i < 3; i++) b.failure(0, b.tryAcquire(0));
    const p = b.tryAcquire(1000);
    b.cancel(p);
    expect(b.tryAcquire(1000).allowed).toBe(true);
  });

  it('the registry keeps one breaker per destination and restores a snapshot', () => {
    const r = createBreakerRegistry(
      opts,
      undefined,
      new Map([['a', { state: 'open', consecutiveFailures: 3, openUntil: 5000, openMs: 1000 }]]),
    );
    expect(r.get('a').state(0)).toBe('open');
    expect(r.get('b').state(0)).toBe('closed');
    expect(r.get('a')).toBe(r.get('a'));
    expect(
      r
        .entries()
        .map((b) => b.key)
        .sort(),
    ).toEqual(['a', 'b']);
  });
});

describe('per-destination concurrency limit', () => {
  it('caps each key separately and hands a slot to the next waiter on release', async () => {
    const l = createKeyedLimiter(2);
    const a1 = l.tryAcquire('a')!;
    const a2 = l.tryAcquire('a')!;
    expect(l.tryAcquire('a')).toBeUndefined();
    const b1 = l.tryAcquire('b');
    expect(b1).toBeDefined();
    expect(l.totalActive()).toBe(3);
    let got = false;
    const waiting = l.acquire('a').then((r) => {
      got = true;
      return r;
    });
    await Promise.resolve();
    expect(got).toBe(false);
    a1();
    const a3 = await waiting;
    expect(got).toBe(true);
    expect(l.active('a')).toBe(2);
    a1(); // releasing twice is a no-op
    expect(l.active('a')).toBe(2);
    a2();
    a3();
    b1!();
    expect(l.totalActive()).toBe(0);
    expect(l.active('a')).toBe(0);
  });
});
