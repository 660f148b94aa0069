/**
 * Retry timing: exponential backoff with jitter, and what a server asked for (Retry-After).
 * Pure: the random source and the clock are parameters, so the schedule is testable.
 */
export interface BackoffPolicy {
  /** Delay before the second attempt, before jitter. */
  baseMs: number;
  /** Upper bound of any single delay. */
  maxMs: number;
  /** Growth per attempt (2 doubles the delay). */
  factor: number;
  /** Total attempts, the first one included; after the last one the work is dead-lettered. */
  maxAttempts: number;
}

export const defaultWebhookBackoff: BackoffPolicy = { baseMs: 1_000, maxMs: 10 * 60_000, factor: 2, maxAttempts: 8 };

/**
 * Delay after `attempt` failed attempts (1 = the first attempt failed).
 * "Equal jitter": half of the exponential delay is fixed, the other half random. Unlike full jitter
 * it never retries at once, and unlike no jitter it spreads a burst of failures (a destination that
 * went down for everyone) so the retries do not come back as the same burst.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(attempt));
  const exp = Math.min(policy.maxMs, policy.baseMs * policy.factor ** (n - 1));
  const half = exp / 2;
  return Math.round(half + random() * half);
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). Returns ms from `now`, or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const s = v.trim();
  if (s === '') return undefined;
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const at = Date.parse(s);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: string };

/**
 * What to do after `attempt` failed attempts. A Retry-After from the server wins over the backoff
 * when it asks for longer (it knows its own load), but never beyond `maxMs`: a server cannot park
 * a delivery for a day.
 */
export function decideRetry(
  policy: BackoffPolicy,
  attempt: number,
  options: { retryAfterMs?: number; random?: () => number } = {},
): RetryDecision {
  if (attempt >= policy.maxAttempts) return { retry: false, reason: `gave up after ${attempt} attempts` };
  const backoff = backoffDelay(policy, attempt, options.random);
  const delayMs =
    options.retryAfterMs !== undefined ? Math.min(policy.maxMs, Math.max(backoff, options.retryAfterMs)) : backoff;
  return { retry: true, delayMs };
}
