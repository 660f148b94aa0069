/** The relay from the event store's global log to Kafka. */
export { startRelay } from './relay.ts';
export type { Relay, RelayOptions } from './relay.ts';
export { relayMetrics } from './metrics.ts';
export type { RelayMetrics } from './metrics.ts';
