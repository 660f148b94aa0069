import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { defaultEventCodec } from '../codec/avro.ts';
import type { RecordedEvent } from '../envelope.ts';
import type { EventStore, ReadAllResult } from '../store/port.ts';
import { createKafkaClient, defaultLogger, ensureTopics } from '../bus/kafka/client.ts';
import { EVENTS_TOPIC, type BusCodec } from '../bus/kafka/messages.ts';
import { createLease } from '../bus/lease.ts';
import { relayMetrics } from './metrics.ts';
import { emptyChunk, inProcessProducer, threadProducer, type BatchProducer, type RelayChunk } from './producer.ts';

/**
 * The relay: reads the store's global log in order (readAll is gap-safe) and publishes every
 * event to `keel.events.v1`, key = tenantId, value = Avro, headers = type, schema fingerprint,
 * tenantId, traceparent.
 *
 * - At-least-once, in order per tenant: a batch is produced with an idempotent producer (acks=all,
 *   one request in flight, so a partition never reorders), and the checkpoint moves only after the
 *   broker acknowledged the whole batch. A crash between the two re-publishes the batch; consumers
 *   dedupe by global position (bus/projector.ts).
 * - Exactly one active relay per store: the checkpoint row is a lease (bus/lease.ts) with a fencing
 *   token. Standbys poll it and take over when the holder stops (release) or dies (expiry).
 * - Throughput: the next batch is read and encoded while the current one is in flight.
 */
export interface RelayOptions {
  store: EventStore;
  /** Database holding keel_bus_checkpoints: the store's own database. */
  pool: pg.Pool;
  brokers?: string[];
  /** A client to use instead of one made from `brokers` (the producer then runs on this thread). */
  kafka?: Kafka;
  /**
   * Produce from a worker thread while this thread reads and encodes the next batch (needs
   * `brokers`: the thread makes its own client). Pays off with a spare core; on a busy 2-core
   * machine the extra thread only competes (bench/fanout.ts measures both). Default false.
   */
  producerThread?: boolean;
  codec?: BusCodec;
  topic?: string;
  /** Lease and checkpoint name. Default `relay:<topic>`. */
  name?: string;
  /** Events read per batch. Default 2000. */
  batchSize?: number;
  /** Bytes per produce request (a batch is split). Default 1 MiB. */
  maxSendBytes?: number;
  /** Poll interval once caught up. Default 10 ms. */
  pollIntervalMs?: number;
  /** A dead relay is replaced after this. Default 10 s. */
  leaseTtlMs?: number;
  holder?: string;
  logger?: Logger;
  /** prom-client registry for the relay metrics. Default: the global registry. */
  registry?: Registry;
  /** Create the topics first. Default true. */
  ensureTopics?: boolean;
  /** Called after the broker acknowledged a batch, before its checkpoint is stored (instrumentation, fault tests). */
  beforeCheckpoint?: (info: { after: number; position: number; events: number }) => Promise<void>;
}

export interface Relay {
  readonly name: string;
  readonly holder: string;
  /** True while this relay holds the lease and publishes. */
  isActive(): boolean;
  /** Resolves the first time this relay becomes the active one. */
  readonly activated: Promise<void>;
  /** Last checkpointed position (what the broker acknowledged). */
  position(): number;
  /** Resolves once the checkpoint reached `position` (this relay's view). */
  waitFor(position: number, timeoutMs?: number): Promise<void>;
  /** Finishes the batch in flight, gives the lease up (a standby takes over at once). */
  stop(): Promise<void>;
  /** Settles when the relay stopped. */
  readonly done: Promise<void>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(finish, ms);
    function finish() {
      clearTimeout(t);
      signal?.removeEventListener('abort', finish);
      resolve();
    }
    signal?.addEventListener('abort', finish, { once: true });
  });

interface Prepared {
  read: ReadAllResult;
  chunks: RelayChunk[];
}

export function startRelay(options: RelayOptions): Relay {
  const { store, pool } = options;
  const topic = options.topic ?? EVENTS_TOPIC;
  const name = options.name ?? `relay:${topic}`;
  const logger = (options.logger ?? defaultLogger('keel-relay')).child({ relay: name });
  const codec = options.codec ?? defaultEventCodec();
  if (!options.kafka && !options.brokers?.length) throw new Error('startRelay needs `kafka` or `brokers`');
  const kafka = options.kafka ?? createKafkaClient({ brokers: options.brokers!, clientId: 'keel-relay', logger });
  const batchSize = Math.max(1, options.batchSize ?? 2000);
  const maxSendBytes = Math.max(1024, options.maxSendBytes ?? 1024 * 1024);
  const pollIntervalMs = options.pollIntervalMs ?? 10;
  const metrics = relayMetrics(options.registry);
  const labels = { relay: name };
  const abort = new AbortController();
  let checkpoint = 0;
  let active = false;
  let resolveActivated!: () => void;
  const activated = new Promise<void>((r) => (resolveActivated = r));
  const waiters = new Set<{ position: number; resolve: () => void }>();

  const lease = createLease({
    pool,
    name,
    holder: options.holder,
    ttlMs: options.leaseTtlMs ?? 10_000,
    onLost: (reason) => logger.warn({ reason }, 'relay lease lost; standing by'),
  });

  const setCheckpoint = (position: number) => {
    checkpoint = position;
    metrics.checkpointPosition.set(labels, position);
    for (const w of waiters) {
      if (position < w.position) continue;
      waiters.delete(w);
      w.resolve();
    }
  };

  const prepare = async (after: number): Promise<Prepared> => {
    const read = await store.readAll({ after, maxCount: batchSize });
    const chunks: RelayChunk[] = [];
    let chunk = emptyChunk();
    for (const event of read.events) {
      const value = codec.encode(event);
      const size = value.length + event.tenantId.length + 160; // + headers and record overhead
      if (chunk.values.length && chunk.bytes + size > maxSendBytes) {
        chunks.push(chunk);
        chunk = emptyChunk();
      }
      chunk.values.push(value);
      chunk.tenants.push(event.tenantId);
      chunk.types.push(event.type);
      chunk.fingerprints.push(codec.fingerprintOf(event.type, event.schemaVersion));
      chunk.traceparents.push(event.traceparent);
      chunk.bytes += size;
    }
    if (chunk.values.length) chunks.push(chunk);
    return { read, chunks };
  };

  if (options.producerThread && !options.brokers?.length) throw new Error('startRelay: producerThread needs `brokers`');
  const producer: BatchProducer = options.producerThread
    ? threadProducer({ brokers: options.brokers!, clientId: 'keel-relay', logger })
    : inProcessProducer(kafka);

  /** Produces until the broker acknowledged every chunk; false when stopped or the lease was lost first. */
  const publish = async (chunks: RelayChunk[], events: RecordedEvent[]): Promise<boolean> => {
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      if (abort.signal.aborted || !lease.isHeld()) return false;
      try {
        await producer.send(topic, chunks);
        metrics.batchSeconds.observe(labels, (performance.now() - started) / 1000);
        metrics.published.inc(labels, events.length);
        return true;
      } catch (err) {
        metrics.publishFailures.inc(labels);
        logger.warn(
          {
            attempt,
            err: (err as Error).message,
            from: events[0]?.globalPosition,
            to: events[events.length - 1]?.globalPosition,
          },
          'publish failed; retrying the batch',
        );
        // A fresh producer (new producer id) after a failure: a retried batch must not trip over
        // the old producer's sequence state after a broker restart. Duplicates it may cause are
        // absorbed by the consumers.
        await producer.reset();
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)), abort.signal);
      }
    }
  };

  const publishFrom = async (start: number) => {
    let after = start;
    const prefetch = (from: number) => {
      const p = prepare(from);
      p.catch(() => undefined); // observed below; never an unhandled rejection when discarded
      return p;
    };
    let next = prefetch(after);
    while (!abort.signal.aborted && lease.isHeld()) {
      const cur = await next;
      if (cur.read.events.length === 0) {
        if (cur.read.position > after && (await lease.checkpoint(cur.read.position)))
          setCheckpoint((after = cur.read.position));
        await sleep(pollIntervalMs, abort.signal);
        next = prefetch(after);
        continue;
      }
      next = prefetch(cur.read.position);
      if (!(await publish(cur.chunks, cur.read.events))) return;
      await options.beforeCheckpoint?.({ after, position: cur.read.position, events: cur.read.events.length });
      if (!(await lease.checkpoint(cur.read.position))) return;
      after = cur.read.position;
      setCheckpoint(after);
      if (cur.read.isEnd) metrics.lagEvents.set(labels, 0);
    }
  };

  const lagTimer = setInterval(() => {
    if (!active) return;
    store.headPosition().then(
      (head) => {
        metrics.headPosition.set(labels, head);
        metrics.lagEvents.set(labels, Math.max(0, head - checkpoint));
      },
      () => undefined,
    );
  }, 1_000);
  lagTimer.unref();

  const run = async () => {
    if (options.ensureTopics !== false) {
      for (let attempt = 0; !abort.signal.aborted; attempt++) {
        try {
          await ensureTopics(kafka, { topic, logger });
          break;
        } catch (err) {
          logger.warn({ err: (err as Error).message }, 'cannot create the topics yet; retrying');
          await sleep(Math.min(5_000, 200 * 2 ** Math.min(attempt, 5)), abort.signal);
        }
      }
    }
    let failures = 0;
    while (!abort.signal.aborted) {
      const state = await lease.acquire(abort.signal);
      if (!state) break;
      active = true;
      metrics.active.set(labels, 1);
      setCheckpoint(state.position);
      logger.info({ position: state.position, holder: lease.holder }, 'relay active');
      try {
        await producer.connect(); // before `activated`: the first batch does not pay for it
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'producer cannot connect yet');
      }
      resolveActivated();
      try {
        await publishFrom(state.position);
        failures = 0;
      } catch (err) {
        failures++;
        logger.error({ err: (err as Error).message }, 'relay failed; resuming from its checkpoint');
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(failures, 6)), abort.signal);
      } finally {
        active = false;
        metrics.active.set(labels, 0);
      }
    }
    clearInterval(lagTimer);
    await producer.close();
    await lease.release().catch(() => undefined);
    logger.info('relay stopped');
  };

  const done = run();
  done.catch(() => undefined);

  return {
    name,
    holder: lease.holder,
    isActive: () => active,
    activated,
    position: () => checkpoint,
    waitFor: (position, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        if (checkpoint >= position) return resolve();
        const w = { position, resolve };
        waiters.add(w);
        if (timeoutMs !== undefined) {
          setTimeout(() => {
            if (waiters.delete(w))
              reject(new Error(`relay did not reach position ${position} within ${timeoutMs} ms (at ${checkpoint})`));
          }, timeoutMs).unref();
        }
      }),
    stop: async () => {
      abort.abort();
      await done;
    },
    done,
  };
}
