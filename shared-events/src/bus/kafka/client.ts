import kafkajs from 'kafkajs';
import type { Kafka, LogEntry } from 'kafkajs';
import pino from 'pino';
import type { Logger } from 'pino';
import { DEAD_LETTER_TOPIC, EVENTS_PARTITIONS, EVENTS_TOPIC } from './messages.ts';

/** kafkajs is CommonJS: its classes come off the default export under ESM. */
export const { Kafka: KafkaClient, logLevel, Partitioners, KafkaJSError } = kafkajs;

/**
 * kafkajs' DefaultPartitioner (the Java client's murmur2 mapping), remembered per key. kafkajs
 * computes murmur2 with a BigInt-backed Long type, several allocations per key byte: for the
 * relay, whose key is the tenant id and whose batches hold thousands of messages of a few
 * hundred tenants, it was the largest single cost of producing (a bare producer with explicit
 * partitions sent 40k msgs/s here, the same one partitioning by key 25k). Misses go to the
 * DefaultPartitioner itself, so every key maps to the very partition it always did.
 */
export const cachingDefaultPartitioner: kafkajs.ICustomPartitioner = () => {
  const inner = Partitioners.DefaultPartitioner();
  const cache = new Map<string, number>();
  let partitions = -1;
  return (args) => {
    const { message, partitionMetadata } = args;
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    const key = message.key;
    if (key === null || key === undefined) return inner(args);
    if (partitionMetadata.length !== partitions || cache.size > 100_000) {
      cache.clear();
      partitions = partitionMetadata.length;
    }
    const k = typeof key === 'string' ? key : `\u0000${key.toString('latin1')}`; // a Buffer key never meets a string one
    let p = cache.get(k);
    if (p === undefined) cache.set(k, (p = inner(args)));
    return p;
  };
};

export function defaultLogger(name: string): Logger {
  return pino({ name, level: process.env.LOG_LEVEL ?? 'info' });
}

export interface KafkaClientOptions {
  brokers: string[];
  clientId?: string;
  logger?: Logger;
}

/** A kafkajs client whose own logs go through pino (warnings and errors only: kafkajs is chatty). */
export function createKafkaClient(options: KafkaClientOptions): Kafka {
  const logger = (options.logger ?? defaultLogger('kafka')).child({ component: 'kafkajs' });
  return new KafkaClient({
    clientId: options.clientId ?? 'keel',
    brokers: options.brokers,
    logLevel: logLevel.WARN,
    // Generous reconnects: a broker restart must look like a pause, not a crash.
    retry: { initialRetryTime: 200, maxRetryTime: 5_000, retries: 8 },
    logCreator:
      () =>
      ({ namespace, level, log }: LogEntry) => {
        const {
          message,
          timestamp: _t,
          logger: _l,
          ...extra
        } = log as { message: string; timestamp?: string; logger?: string };
        // Our producers retry a failed batch themselves with a fresh producer (see relay.ts), so
        // kafkajs' bounded retries do not weaken what we promise: at-least-once, in order.
        if (message.startsWith('Limiting retries for the idempotent producer')) return;
        const entry = { namespace, ...extra };
        if (level === logLevel.ERROR) logger.error(entry, message);
        else if (level === logLevel.WARN) logger.warn(entry, message);
        else if (level === logLevel.INFO) logger.info(entry, message);
        else logger.debug(entry, message);
      },
  });
}

export interface EnsureTopicsOptions {
  topic?: string;
  deadLetterTopic?: string;
  partitions?: number;
  /** Default: min(3, number of brokers). */
  replicationFactor?: number;
  logger?: Logger;
}

/**
 * Creates the events topic (12 partitions) and its dead-letter topic up front: auto-creation is
 * off on Keel's brokers (and unreliable with kafkajs on KRaft). Idempotent. An existing topic with
 * another partition count is reported, never changed: adding partitions moves tenants to other
 * partitions and breaks their order for events already published.
 */
export async function ensureTopics(kafka: Kafka, options: EnsureTopicsOptions = {}): Promise<void> {
  const topic = options.topic ?? EVENTS_TOPIC;
  const dlq = options.deadLetterTopic ?? DEAD_LETTER_TOPIC;
  const partitions = options.partitions ?? EVENTS_PARTITIONS;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const cluster = await admin.describeCluster();
    const replicationFactor = options.replicationFactor ?? Math.min(3, cluster.brokers.length);
    const configEntries = [
      // A relay send may carry ~1 MiB for one partition; leave room.
      { name: 'max.message.bytes', value: String(8 * 1024 * 1024) },
      { name: 'min.insync.replicas', value: String(Math.max(1, replicationFactor - 1)) },
    ];
    const existing = new Set(await admin.listTopics());
    const wanted = [
      { topic, numPartitions: partitions, replicationFactor, configEntries },
      { topic: dlq, numPartitions: partitions, replicationFactor, configEntries },
    ].filter((t) => !existing.has(t.topic));
    if (wanted.length) {
      try {
        // Leaders are awaited below: kafkajs' own waitForLeaders trips over the metadata of a
        // topic the KRaft controller has created but the broker does not serve yet.
        await admin.createTopics({ topics: wanted, waitForLeaders: false, timeout: 30_000 });
      } catch (err) {
        // Another process created it meanwhile.
        if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS' && !/already exists/i.test(String(err)))
          throw err;
      }
    }
    const deadline = Date.now() + 30_000;
    for (let delay = 50; ; delay = Math.min(1_000, delay * 2)) {
      try {
        const md = await admin.fetchTopicMetadata({ topics: [topic, dlq] });
        const ready = md.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0));
        if (ready) {
          const have = md.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
          if (have !== partitions) {
            options.logger?.warn(
              { topic, partitions: have, expected: partitions },
              'events topic has an unexpected partition count',
            );
          }
          break;
        }
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
      if (Date.now() > deadline) throw new Error(`topics ${topic}, ${dlq} have no leaders after 30 s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  } finally {
    await admin.disconnect();
  }
}
