import promClient from 'prom-client';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Relay metrics (prom-client), labelled by relay name. Registered once per registry, so several
 * relays (tests, a standby next to the active one) share the series.
 */
export interface RelayMetrics {
  lagEvents: Gauge<'relay'>;
  checkpointPosition: Gauge<'relay'>;
  headPosition: Gauge<'relay'>;
  active: Gauge<'relay'>;
  published: Counter<'relay'>;
  publishFailures: Counter<'relay'>;
  batchSeconds: Histogram<'relay'>;
}

export function relayMetrics(registry: Registry = promClient.register): RelayMetrics {
  const get = <M>(name: string, make: () => M): M => (registry.getSingleMetric(name) as M | undefined) ?? make();
  const registers = [registry];
  return {
    lagEvents: get(
      'keel_relay_lag_events',
      () =>
        new promClient.Gauge({
          name: 'keel_relay_lag_events',
          help: 'Events in the store not yet published to Kafka (head position - checkpoint)',
          labelNames: ['relay'],
          registers,
        }),
    ),
    checkpointPosition: get(
      'keel_relay_checkpoint_position',
      () =>
        new promClient.Gauge({
          name: 'keel_relay_checkpoint_position',
          help: 'Global position up to which the broker acknowledged',
          labelNames: ['relay'],
          registers,
        }),
    ),
    headPosition: get(
      'keel_relay_head_position',
      () =>
        new promClient.Gauge({
          name: 'keel_relay_head_position',
          help: "Store's head global position (gap-safe) as last seen",
          labelNames: ['relay'],
          registers,
        }),
    ),
    active: get(
      'keel_relay_active',
      () =>
        new promClient.Gauge({
          name: 'keel_relay_active',
          help: '1 while this process holds the relay lease',
          labelNames: ['relay'],
          registers,
        }),
    ),
    published: get(
      'keel_relay_published_events_total',
      () =>
        new promClient.Counter({
          name: 'keel_relay_published_events_total',
          help: 'Events acknowledged by the broker',
          labelNames: ['relay'],
          registers,
        }),
    ),
    publishFailures: get(
      'keel_relay_publish_failures_total',
      () =>
        new promClient.Counter({
          name: 'keel_relay_publish_failures_total',
          help: 'Failed produce attempts (retried)',
          labelNames: ['relay'],
          registers,
        }),
    ),
    batchSeconds: get(
      'keel_relay_batch_seconds',
      () =>
        new promClient.Histogram({
          name: 'keel_relay_batch_seconds',
          help: 'Time to publish one batch until the broker acknowledged it',
          labelNames: ['relay'],
          buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
          registers,
        }),
    ),
  };
}
