import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { defaultEventCodec } from '../../codec/avro.ts';
import { UnknownSchemaError } from '../../codec/errors.ts';
import type { RecordedEvent } from '../../envelope.ts';
import type { BusConsumer, ConsumeOptions, DeadLetter, EventBus } from '../port.ts';
import { cachingDefaultPartitioner, createKafkaClient, defaultLogger, ensureTopics, KafkaJSError } from './client.ts';
import {
  DEAD_LETTER_TOPIC,
  EVENTS_TOPIC,
  HEADERS,
  fromKafkaMessage,
  headerString,
  matchesFilter,
  toKafkaMessage,
  type BusCodec,
} from './messages.ts';

/**
 * The Kafka bus: one kafkajs consumer group per ConsumeOptions.group over `keel.events.v1`.
 *
 * - eachBatch with explicit resolveOffset: only what the handler acknowledged is resolved, and
 *   resolved offsets are committed after every handler call (commitOffsetsIfNecessary) and when
 *   kafkajs leaves the batch (rebalance, shutdown).
 * - A failing handler does not crash the consumer: the unacknowledged rest of the partition's batch
 *   is retried in place with backoff while heart-beating, so the partition keeps its order.
 * - Rebalance: kafkajs errors (REBALANCE_IN_PROGRESS from a heartbeat) are let through so kafkajs
 *   commits what was resolved and rejoins; a member that lost its partition stops mid-batch.
 * - A message that cannot be decoded (corrupt, not Keel) is parked on the dead-letter topic and
 *   skipped; a message with an unknown schema fingerprint blocks its partition (a newer writer:
 *   deploy the newer contract) rather than being skipped.
 */
export interface KafkaBusOptions {
  brokers: string[];
  codec?: BusCodec;
  kafka?: Kafka;
  clientId?: string;
  topic?: string;
  deadLetterTopic?: string;
  logger?: Logger;
  /** Consumer session timeout (a dead member's partitions move after this). Default 10 s. */
  sessionTimeoutMs?: number;
  /** Default for ConsumeOptions.concurrency: partitions handled at once per member. Default 4. */
  partitionsConsumedConcurrently?: number;
  /** Create the topics on first use. Default true. */
  ensureTopics?: boolean;
  /** Backoff for a failing handler: initial, doubled up to max. Defaults 100 ms, 5 s. */
  retryBackoff?: { initialMs?: number; maxMs?: number };
}

export interface KafkaBus extends EventBus {
  readonly kind: 'kafka';
  readonly kafka: Kafka;
  readonly topic: string;
  readonly deadLetterTopic: string;
  ensureTopics(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createKafkaBus(options: KafkaBusOptions): KafkaBus {
  const logger = options.logger ?? defaultLogger('keel-bus');
  const codec = options.codec ?? defaultEventCodec();
  const kafka =
    options.kafka ?? createKafkaClient({ brokers: options.brokers, clientId: options.clientId ?? 'keel-bus', logger });
  const topic = options.topic ?? EVENTS_TOPIC;
  const deadLetterTopic = options.deadLetterTopic ?? DEAD_LETTER_TOPIC;
  const sessionTimeout = options.sessionTimeoutMs ?? 10_000;
  const backoffInitial = options.retryBackoff?.initialMs ?? 100;
  const backoffMax = options.retryBackoff?.maxMs ?? 5_000;
  const consumers = new Set<BusConsumer>();
  let topicsReady: Promise<void> | undefined;
  let producer: Promise<Producer> | undefined;

  const ensure = () => {
    topicsReady ??= ensureTopics(kafka, { topic, deadLetterTopic, logger }).catch((err) => {
      topicsReady = undefined;
      throw err;
    });
    return topicsReady;
  };

  const dlqProducer = () => {
    producer ??= (async () => {
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: cachingDefaultPartitioner,
      });
      await p.connect();
      return p;
    })().catch((err) => {
      producer = undefined;
      throw err;
    });
    return producer;
  };

  async function park(
    group: string,
    key: string | null,
    value: Buffer | null,
    headers: Record<string, string>,
    reason: string,
    attempts: number,
  ) {
    const p = await dlqProducer();
    await p.send({
      topic: deadLetterTopic,
      acks: -1,
      messages: [
        {
          key,
          value,
          headers: {
            ...headers,
            [HEADERS.deadLetterGroup]: group,
            [HEADERS.deadLetterReason]: reason.slice(0, 2000),
            [HEADERS.deadLetterAttempts]: String(attempts),
            [HEADERS.deadLetterAt]: new Date().toISOString(),
          },
        },
      ],
    });
  }

  async function consume(co: ConsumeOptions): Promise<BusConsumer> {
    if (options.ensureTopics !== false) await ensure();
    const { group, handler, filter } = co;
    const maxBatch = Math.max(1, co.maxBatchSize ?? 500);
    const log = logger.child({ group });
    const consumer: Consumer = kafka.consumer({
      groupId: group,
      sessionTimeout,
      heartbeatInterval: Math.max(500, Math.floor(sessionTimeout / 10)),
      rebalanceTimeout: 30_000,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 500,
      maxBytesPerPartition: 4 * 1024 * 1024,
      retry: { initialRetryTime: 200, maxRetryTime: 5_000, retries: 8, restartOnFailure: async () => !stopping },
    });

    let stopping = false;
    let assigned: number[] = [];
    let resolveReady!: () => void;
    const ready = new Promise<void>((r) => (resolveReady = r));
    let settle!: { resolve: () => void; reject: (e: unknown) => void };
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    done.catch(() => undefined);

    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      assigned = [...(e.payload.memberAssignment[topic] ?? [])].sort((a, b) => a - b);
      log.info({ partitions: assigned, memberId: e.payload.memberId }, 'joined consumer group');
      resolveReady();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      log.error({ err: e.payload.error?.message, restart: e.payload.restart }, 'consumer crashed');
      if (!e.payload.restart && !stopping) settle.reject(e.payload.error);
    });

    const eachBatch = async (p: EachBatchPayload) => {
      const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale } = p;
      const lane = `kafka:${batch.partition}`;
      const live = () => isRunning() && !isStale() && !stopping;
      // Decode first; undecodable messages are parked, filtered ones pass without the handler.
      const items: Item[] = [];
      for (const message of batch.messages) {
        const type = headerString(message.headers, HEADERS.eventType);
        if (filter?.eventTypes && type !== undefined && !filter.eventTypes.includes(type)) {
          items.push({ message });
          continue;
        }
        try {
          const event = fromKafkaMessage(message, codec);
          items.push({ message, event: matchesFilter(event, filter) ? event : undefined });
        } catch (err) {
          if (err instanceof UnknownSchemaError) {
            items.push({ message, blocked: err });
            break; // nothing after it may pass before it (per-tenant order)
          }
          log.error(
            { partition: batch.partition, offset: message.offset, err: (err as Error).message },
            'undecodable message parked',
          );
          if (!(await retryWhileLive(live, () => parkRaw(group, message, `undecodable: ${(err as Error).message}`))))
            return;
          items.push({ message });
        }
      }

      let i = 0;
      let failures = 0;
      while (i < items.length) {
        if (!live()) return;
        const blocked = items[i]!.blocked;
        if (blocked) {
          failures++;
          log.error(
            { partition: batch.partition, offset: items[i]!.message.offset, err: blocked.message },
            'partition blocked by an event of unknown schema',
          );
          await waitBeating(Math.min(backoffMax, backoffInitial * 2 ** failures), heartbeat, live);
          continue;
        }
        // The next handler call: up to maxBatch events, with the skipped messages among them.
        const idx: number[] = [];
        let end = i;
        for (; end < items.length && idx.length < maxBatch && !items[end]!.blocked; end++) {
          if (items[end]!.event) idx.push(end);
        }
        if (idx.length === 0) {
          resolveOffset(items[end - 1]!.message.offset);
          i = end;
          continue;
        }
        const events = idx.map((k) => items[k]!.event!);
        let applied = 0;
        try {
          const ack = await handler({ group, events, lane, heartbeat, isRunning: live });
          applied = ack ? Math.max(0, Math.min(events.length, Math.floor(ack.applied))) : events.length;
        } catch (err) {
          if (err instanceof KafkaJSError) throw err; // rebalance or broker trouble: kafkajs handles it
          log.error(
            {
              partition: batch.partition,
              tenantId: events[0]?.tenantId,
              correlationId: events[0]?.correlationId,
              err: (err as Error).message,
            },
            'handler failed; retrying',
          );
        }
        if (applied > 0) {
          const upto = applied === events.length ? end - 1 : idx[applied - 1]!;
          resolveOffset(items[upto]!.message.offset);
          i = upto + 1;
          failures = 0;
          await commitOffsetsIfNecessary();
        }
        if (applied < events.length) {
          failures++;
          await waitBeating(Math.min(backoffMax, backoffInitial * 2 ** (failures - 1)), heartbeat, live);
        } else {
          await heartbeat();
        }
      }
    };

    async function parkRaw(g: string, message: KafkaMessage, reason: string) {
      const headers: Record<string, string> = {};
      for (const k of Object.keys(message.headers ?? {})) {
        const v = headerString(message.headers, k);
        if (v !== undefined) headers[k] = v;
      }
      await park(g, message.key ? message.key.toString('utf8') : null, message.value, headers, reason, 1);
    }

    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: (co.from ?? 'earliest') === 'earliest' });
    await consumer.run({
      autoCommit: true,
      autoCommitInterval: 1_000,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: Math.max(1, co.concurrency ?? options.partitionsConsumedConcurrently ?? 4),
      eachBatch,
    });

    const handle: BusConsumer = {
      group,
      ready,
      lanes: () => assigned.map((p) => `kafka:${p}`),
      stop: async () => {
        if (stopping) return done.catch(() => undefined);
        stopping = true;
        try {
          await consumer.disconnect(); // waits for the batch in flight, commits, leaves the group
          settle.resolve();
        } catch (err) {
          settle.reject(err);
        } finally {
          consumers.delete(handle);
        }
        return done.catch(() => undefined);
      },
      done,
    };
    consumers.add(handle);
    return handle;
  }

  return {
    kind: 'kafka',
    kafka,
    topic,
    deadLetterTopic,
    ensureTopics: ensure,
    consume,
    deadLetter: async (entry: DeadLetter) => {
      const msg = toKafkaMessage(entry.event, codec);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(msg.headers ?? {})) if (typeof v === 'string') headers[k] = v;
      await park(entry.group, entry.event.tenantId, msg.value as Buffer, headers, entry.reason, entry.attempts);
    },
    close: async () => {
      await Promise.all([...consumers].map((c) => c.stop()));
      const p = await producer?.catch(() => undefined);
      producer = undefined;
      await p?.disconnect();
    },
  };
}

async function waitBeating(ms: number, heartbeat: () => Promise<void>, live: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && live()) {
    await sleep(Math.min(250, until - Date.now()));
    await heartbeat();
  }
}

/** True once fn succeeded; false when the consumer stopped (or lost the partition) first. */
async function retryWhileLive(live: () => boolean, fn: () => Promise<void>): Promise<boolean> {
  for (let attempt = 0; live(); attempt++) {
    try {
      await fn();
      return true;
    } catch {
      await sleep(Math.min(5_000, 100 * 2 ** attempt));
    }
  }
  return false;
}

interface Item {
  message: KafkaMessage;
  /** Absent: filtered out or parked, acknowledged without the handler. */
  event?: RecordedEvent;
  /** Unknown schema: the partition waits here. */
  blocked?: Error;
}
