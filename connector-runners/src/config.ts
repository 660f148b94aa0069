import { availableParallelism } from 'node:os';
import { ConfigError, envReader } from '@keel/shared-events';
import type { BreakerOptions } from './breaker.ts';
import type { BackoffPolicy } from './retry/backoff.ts';

/**
 * Runner settings from the environment, validated once at start (each bad value named).
 *
 *   KEEL_RUNNER_WEBHOOK_TIMEOUT_MS    10000   whole exchange with an endpoint
 *   KEEL_RUNNER_WEBHOOK_MAX_ATTEMPTS  8       then dead letter
 *   KEEL_RUNNER_FLOW_MAX_ATTEMPTS     5       per step, unless the flow says otherwise
 *   KEEL_RUNNER_STEP_TIMEOUT_MS       10000   HTTP steps without their own timeout
 *   KEEL_RUNNER_BACKOFF_BASE_MS       1000    first retry delay (before jitter)
 *   KEEL_RUNNER_BACKOFF_MAX_MS        600000  longest retry delay
 *   KEEL_RUNNER_PER_DESTINATION       32      calls at once per destination (tenant + origin)
 *   KEEL_RUNNER_MAX_IN_FLIGHT         2000    deliveries/runs held by one runner process
 *   KEEL_RUNNER_LEASE_MS              60000   a crashed runner's work is taken over after this
 *   KEEL_RUNNER_POLL_MS               200     scheduled retries are looked for this often
 *   KEEL_RUNNER_BREAKER_FAILURES      5       consecutive failures that open a circuit
 *   KEEL_RUNNER_BREAKER_OPEN_MS       5000    first open period (doubles per failed probe)
 *   KEEL_RUNNER_SHUTDOWN_GRACE_MS     10000   in-flight work gets this long on stop, then is handed back
 *   KEEL_RUNNER_RETENTION_HOURS       24      delivered rows and finished runs kept (dedupes late bus redeliveries)
 *   KEEL_RUNNER_BUS_MAX_ATTEMPTS      5       a bus batch that cannot be taken in goes event by event, then to the bus dead letter
 *   KEEL_RUNNER_HTTP_THREAD           auto    on: outbound HTTP runs on a worker thread of its own; off: on the runner's
 *                                             thread; auto: on when the machine has more than one core
 *   KEEL_RUNNER_PRIVATE_NETWORKS      auto    allow | deny calls to loopback, private and link-local addresses (SSRF
 *                                             guard); auto: allowed in the embedded profile (a laptop), denied otherwise
 */
export interface RunnerConfig {
  webhookTimeoutMs: number;
  webhookBackoff: BackoffPolicy;
  flowBackoff: BackoffPolicy;
  stepTimeoutMs: number;
  perDestination: number;
  maxInFlight: number;
  leaseMs: number;
  pollMs: number;
  breaker: BreakerOptions;
  shutdownGraceMs: number;
  retentionHours: number;
  busMaxAttempts: number;
  /** Outbound HTTP on a worker thread of its own. */
  httpThread: boolean;
  /** Calls to private addresses; 'auto' is decided by the profile at start. */
  privateNetworks: 'allow' | 'deny' | 'auto';
}

export function loadRunnerConfig(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  const r = envReader(env);
  const baseMs = r.int('KEEL_RUNNER_BACKOFF_BASE_MS', 1000, 1, 3_600_000);
  const maxMs = r.int('KEEL_RUNNER_BACKOFF_MAX_MS', 600_000, 1, 86_400_000);
  if (maxMs < baseMs)
    r.problems.push(`KEEL_RUNNER_BACKOFF_MAX_MS (${maxMs}) must not be below KEEL_RUNNER_BACKOFF_BASE_MS (${baseMs})`);
  const webhookTimeoutMs = r.int('KEEL_RUNNER_WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000);
  const stepTimeoutMs = r.int('KEEL_RUNNER_STEP_TIMEOUT_MS', 10_000, 100, 120_000);
  const leaseMs = r.int('KEEL_RUNNER_LEASE_MS', 60_000, 500, 3_600_000);
  if (leaseMs <= Math.max(webhookTimeoutMs, stepTimeoutMs))
    r.problems.push(
      `KEEL_RUNNER_LEASE_MS (${leaseMs}) must exceed the webhook and step timeouts, or live work would be taken over`,
    );
  const openMs = r.int('KEEL_RUNNER_BREAKER_OPEN_MS', 5_000, 1, 3_600_000);
  const cfg: RunnerConfig = {
    webhookTimeoutMs,
    webhookBackoff: { baseMs, maxMs, factor: 2, maxAttempts: r.int('KEEL_RUNNER_WEBHOOK_MAX_ATTEMPTS', 8, 1, 100) },
    flowBackoff: { baseMs, maxMs, factor: 2, maxAttempts: r.int('KEEL_RUNNER_FLOW_MAX_ATTEMPTS', 5, 1, 100) },
    stepTimeoutMs,
    perDestination: r.int('KEEL_RUNNER_PER_DESTINATION', 32, 1, 10_000),
    maxInFlight: r.int('KEEL_RUNNER_MAX_IN_FLIGHT', 2000, 1, 100_000),
    leaseMs,
    pollMs: r.int('KEEL_RUNNER_POLL_MS', 200, 5, 60_000),
    breaker: {
      failureThreshold: r.int('KEEL_RUNNER_BREAKER_FAILURES', 5, 1, 1000),
      openMs,
      maxOpenMs: Math.max(openMs, 5 * 60_000),
      halfOpenProbes: 1,
      closeAfterSuccesses: 1,
    },
    shutdownGraceMs: r.int('KEEL_RUNNER_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    retentionHours: r.int('KEEL_RUNNER_RETENTION_HOURS', 24, 1, 24 * 365),
    busMaxAttempts: r.int('KEEL_RUNNER_BUS_MAX_ATTEMPTS', 5, 1, 100),
    httpThread: { on: true, off: false, auto: availableParallelism() > 1 }[r.oneOf('KEEL_RUNNER_HTTP_THREAD', ['auto', 'on', 'off'], 'auto')],
    privateNetworks: r.oneOf('KEEL_RUNNER_PRIVATE_NETWORKS', ['auto', 'allow', 'deny'], 'auto'),
  };
  if (r.problems.length) throw new ConfigError(r.problems);
  return cfg;
}
