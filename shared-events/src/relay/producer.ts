import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '../threads/ts-worker.ts';
import type { IHeaders, Kafka, Message, Producer } from 'kafkajs';
import type { Logger } from 'pino';
import { cachingDefaultPartitioner } from '../bus/kafka/client.ts';
import { HEADERS } from '../bus/kafka/messages.ts';

/**
 * One produce request's worth of relay messages, column-wise: cheap to build, and cheap to hand to
 * a producer thread (the values travel as one transferred buffer, not 2,000 cloned ones).
 */
export interface RelayChunk {
  values: Buffer[];
  tenants: string[];
  types: string[];
  fingerprints: string[];
  traceparents: (string | undefined)[];
  bytes: number;
}

export function emptyChunk(): RelayChunk {
  return { values: [], tenants: [], types: [], fingerprints: [], traceparents: [], bytes: 0 };
}

export function chunkMessages(
  c: Pick<RelayChunk, 'tenants' | 'types' | 'fingerprints' | 'traceparents'>,
  value: (i: number) => Buffer,
): Message[] {
  const out: Message[] = new Array(c.tenants.length);
  for (let i = 0; i < c.tenants.length; i++) {
    const headers: IHeaders = {
      [HEADERS.eventType]: c.types[i]!,
      [HEADERS.fingerprint]: c.fingerprints[i]!,
      [HEADERS.tenantId]: c.tenants[i]!,
    };
    const tp = c.traceparents[i];
    if (tp) headers[HEADERS.traceparent] = tp;
    out[i] = { key: c.tenants[i]!, value: value(i), headers };
  }
  return out;
}

/**
 * Sends a batch's chunks in order with one idempotent producer (acks=all, one request in flight),
 * resolving once the broker acknowledged all of them. `reset` drops the producer so the next send
 * starts with a new producer id (after a failure, see relay.ts).
 */
export interface BatchProducer {
  /** Connects ahead of the first send (so the first batch does not pay for it). */
  connect(): Promise<void>;
  send(topic: string, chunks: RelayChunk[]): Promise<void>;
  reset(): Promise<void>;
  close(): Promise<void>;
}

function newProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: cachingDefaultPartitioner,
  });
}

/** The producer on the relay's own thread. */
export function inProcessProducer(kafka: Kafka): BatchProducer {
  let producer: Producer | undefined;
  const drop = async () => {
    const p = producer;
    producer = undefined;
    await p?.disconnect().catch(() => undefined);
  };
  const connect = async () => {
    if (producer) return producer;
    const p = newProducer(kafka);
    await p.connect();
    producer = p;
    return p;
  };
  return {
    connect: async () => void (await connect()),
    send: async (topic, chunks) => {
      await connect();
      for (const c of chunks)
        await producer!.send({ topic, acks: -1, messages: chunkMessages(c, (i) => c.values[i]!) });
    },
    reset: drop,
    close: drop,
  };
}

/** What crosses to the producer thread per chunk. */
export interface PackedChunk {
  values: ArrayBuffer;
  lengths: Uint32Array;
  tenants: string[];
  types: string[];
  fingerprints: string[];
  traceparents: (string | undefined)[];
}

export type ToProducerThread =
  | { id: number; op: 'send'; topic: string; chunks: PackedChunk[] }
  | { id: number; op: 'connect' }
  | { id: number; op: 'reset' }
  | { id: number; op: 'close' };
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
export type FromProducerThread = { id: number; ok: true } | { id: number; ok: false; error: string };

function pack(c: RelayChunk): PackedChunk {
  let total = 0;
  for (const v of c.values) total += v.length;
  // allocUnsafeSlow: a buffer of its own (never a slice of the shared pool), so it can be transferred.
  const all = Buffer.allocUnsafeSlow(total);
  const lengths = new Uint32Array(c.values.length);
  let at = 0;
  c.values.forEach((v, i) => {
    v.copy(all, at);
    lengths[i] = v.length;
    at += v.length;
  });
  return {
    values: all.buffer as ArrayBuffer,
    lengths,
    tenants: c.tenants,
    types: c.types,
    fingerprints: c.fingerprints,
    traceparents: c.traceparents,
  };
}

/**
 * The producer on a worker thread: kafkajs' record encoding is the relay's largest CPU cost, so
 * it runs beside the thread that reads the store and Avro-encodes the next batch. The worker is
 * (re)started on demand; if it dies, the batch in flight fails and is retried like any failed send.
 */
export function threadProducer(options: { brokers: string[]; clientId: string; logger: Logger }): BatchProducer {
  let worker: Worker | undefined;
  let nextId = 1;
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();

  const failAll = (err: Error) => {
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };

  const start = (): Worker => {
    if (worker) return worker;
    const w = startTsWorker(new URL('./producer-thread.ts', import.meta.url), {
      workerData: { brokers: options.brokers, clientId: options.clientId, logLevel: options.logger.level },
    });
    w.on('message', (m: FromProducerThread) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.ok) p.resolve();
      else p.reject(new Error(m.error));
    });
    w.on('error', (err) => {
      options.logger.error({ err: err.message }, 'relay producer thread failed');
      if (worker === w) worker = undefined;
      failAll(err);
    });
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(new Error(`relay producer thread exited (${code})`));
    });
    worker = w;
    return w;
  };

  const call = (msg: WithoutId<ToProducerThread>, transfer: ArrayBuffer[] = []): Promise<void> => {
    const w = start();
    const id = nextId++;
    return new Promise<void>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      w.postMessage({ ...msg, id }, transfer);
    });
  };

  return {
    connect: () => call({ op: 'connect' }),
    send: (topic, chunks) => {
      const packed = chunks.map(pack);
      return call(
        { op: 'send', topic, chunks: packed },
        packed.flatMap((p) => [p.values, p.lengths.buffer as ArrayBuffer]),
      );
    },
    reset: async () => {
      if (worker) await call({ op: 'reset' }).catch(() => undefined);
    },
    close: async () => {
      const w = worker;
      if (!w) return;
      await call({ op: 'close' }).catch(() => undefined);
      await w.terminate();
      worker = undefined;
    },
  };
}
