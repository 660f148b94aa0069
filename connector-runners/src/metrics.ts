import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The runners' Prometheus metrics, in a registry of their own: `startRunners` may run without an
 * HTTP app (its own process), and `mountConnectorRunners` adds these to the app's /metrics.
 * Created once per process, so starting runners twice (tests) reuses them.
 */
export interface RunnerMetrics {
  registry: Registry;
  webhookOutcomes: Counter<'outcome'>;
  webhookLag: Histogram;
  stepOutcomes: Counter<'step_type' | 'outcome'>;
  runOutcomes: Counter<'outcome'>;
  circuits: Gauge<'state'>;
  deferred: Counter<'reason'>;
}

let metrics: RunnerMetrics | undefined;

export function runnerMetrics(): RunnerMetrics {
  if (metrics) return metrics;
  const registry = new Registry();
  metrics = {
    registry,
    webhookOutcomes: new Counter({
      name: 'keel_runner_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome (succeeded, failed, dead_lettered)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    webhookLag: new Histogram({
      name: 'keel_runner_webhook_delivery_lag_seconds',
      help: 'From the triggering event being recorded to its successful delivery',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    stepOutcomes: new Counter({
      name: 'keel_runner_flow_steps_total',
      help: 'Flow step attempts by step type and outcome',
      labelNames: ['step_type', 'outcome'],
      registers: [registry],
    }),
    runOutcomes: new Counter({
      name: 'keel_runner_flow_runs_total',
      help: 'Flow runs by final outcome (completed, failed, dead_lettered)',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    circuits: new Gauge({
      name: 'keel_runner_circuits',
      help: 'Destinations by circuit state, as this process sees them',
      labelNames: ['state'],
      registers: [registry],
    }),
    deferred: new Counter({
      name: 'keel_runner_deferred_total',
      help: 'Work put back on the schedule without an attempt (circuit open, destination busy, tenant suspended, connector paused)',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
  return metrics;
}
