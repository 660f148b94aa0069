import { getOrCreateCounter, getOrCreateHistogram, type EventStore } from '@keel/shared-events';
import type { Registry } from 'prom-client';

/** command-service metrics, in the app's registry (served at /metrics). */
export function createCommandMetrics(registry: Registry) {
  return {
    commandDuration: getOrCreateHistogram(registry, {
      name: 'keel_command_duration_seconds',
      help: 'Command handling latency (load, fold, decide, append), by command and outcome',
      labelNames: ['command', 'outcome'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    }),
    appendDuration: getOrCreateHistogram(registry, {
      name: 'keel_store_append_duration_seconds',
      help: 'Event store append latency, by kind (stream: one stream; batch: ingest transaction)',
      labelNames: ['kind'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    }),
    eventsAppended: getOrCreateCounter(registry, {
      name: 'keel_events_appended_total',
      help: 'Events appended by this process, by type',
      labelNames: ['type'] as const,
    }),
    commandConflicts: getOrCreateCounter(registry, {
      name: 'keel_command_conflicts_total',
      help: 'Optimistic concurrency conflicts met while handling commands (retried or answered 409/412)',
      labelNames: ['command'] as const,
    }),
    ingestRecords: getOrCreateCounter(registry, {
      name: 'keel_ingest_records_total',
      help: 'Ingested records by outcome (accepted, rejected)',
      labelNames: ['outcome', 'via'] as const,
    }),
    rateLimited: getOrCreateCounter(registry, {
      name: 'keel_rate_limited_total',
      help: 'Requests refused with 429, by limit',
      labelNames: ['limit'] as const,
    }),
  };
}

export type CommandMetrics = ReturnType<typeof createCommandMetrics>;

/** The store, with append latency and appended-event counts measured. Reads pass through. */
export function instrumentStore(store: EventStore, metrics: CommandMetrics): EventStore {
  return {
    readStream: (...a) => store.readStream(...a),
    readAll: (...a) => store.readAll(...a),
    subscribe: (...a) => store.subscribe(...a),
    truncateBefore: (...a) => store.truncateBefore(...a),
    deleteStream: (...a) => store.deleteStream(...a),
    getStreamMetadata: (...a) => store.getStreamMetadata(...a),
    headPosition: () => store.headPosition(),
    close: () => store.close(),
    async appendToStream(streamId, events, options) {
      const end = metrics.appendDuration.startTimer({ kind: 'stream' });
      const r = await store.appendToStream(streamId, events, options);
      end();
      for (const e of events) metrics.eventsAppended.inc({ type: e.type });
      return r;
    },
    async appendBatch(appends) {
      const end = metrics.appendDuration.startTimer({ kind: 'batch' });
      const r = await store.appendBatch(appends);
      end();
      const byType = new Map<string, number>();
      for (const a of appends) for (const e of a.events) byType.set(e.type, (byType.get(e.type) ?? 0) + 1);
      // Duplicates (by eventId) are not appended; with one type the exact count is known.
      if (byType.size === 1) metrics.eventsAppended.inc({ type: [...byType.keys()][0]! }, r.appended);
      else for (const [type, n] of byType) metrics.eventsAppended.inc({ type }, n);
      return r;
    },
  };
}
