import { describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../src/http/rate-limit.ts';

describe('rate limiter', () => {
  it('allows a burst, then refuses with the wait until a token is back', () => {
    let now = 0;
    const rl = createRateLimiter({ ratePerSecond: 2, burst: 3, now: () => now });
    expect([rl.take('k'), rl.take('k'), rl.take('k')]).toEqual([0, 0, 0]);
    expect(rl.take('k')).toBe(1);
    now += 500; // one token back
    expect(rl.take('k')).toBe(0);
    expect(rl.take('other')).toBe(0); // keys are independent
  });

  it('lets a large cost run into debt and computes Retry-After from it', () => {
    let now = 0;
    const rl = createRateLimiter({ ratePerSecond: 1000, burst: 2000, now: () => now });
    expect(rl.retryAfter('k')).toBe(0);
    rl.charge('k', 7000); // 5000 in debt
    expect(rl.retryAfter('k')).toBe(6); // (1 - (-5000)) / 1000 rounded up
    now += 5001;
    expect(rl.retryAfter('k')).toBe(0);
  });
});
