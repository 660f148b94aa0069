/**
 * The relay's producer thread (see threadProducer in producer.ts): an idempotent kafkajs producer
 * that sends what the relay thread prepared and answers once the broker acknowledged it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Producer } from 'kafkajs';
import pino from 'pino';
import { cachingDefaultPartitioner, createKafkaClient } from '../bus/kafka/client.ts';
import { chunkMessages, type FromProducerThread, type ToProducerThread } from './producer.ts';

const { brokers, clientId, logLevel } = workerData as { brokers: string[]; clientId: string; logLevel: string };
const logger = pino({ name: 'keel-relay-producer', level: logLevel });
const kafka = createKafkaClient({ brokers, clientId, logger });
let producer: Producer | undefined;

const drop = async () => {
  const p = producer;
  producer = undefined;
  await p?.disconnect().catch(() => undefined);
};

const connect = async (): Promise<Producer> => {
  if (producer) return producer;
  const p = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: cachingDefaultPartitioner,
  });
  await p.connect();
  producer = p;
  return p;
};

async function handle(msg: ToProducerThread): Promise<void> {
  switch (msg.op) {
    case 'connect':
      await connect();
      return;
    case 'send': {
      const producer = await connect();
      for (const c of msg.chunks) {
        const all = Buffer.from(c.values);
        const starts = new Uint32Array(c.lengths.length);
        for (let i = 1; i < starts.length; i++) starts[i] = starts[i - 1]! + c.lengths[i - 1]!;
        const messages = chunkMessages(c, (i) => all.subarray(starts[i]!, starts[i]! + c.lengths[i]!));
        await producer.send({ topic: msg.topic, acks: -1, messages });
      }
      return;
    }
    case 'reset':
      return drop();
    case 'close':
      return drop();
  }
}

// One message at a time, in order: sends must never overlap (idempotent sequence numbers).
let queue = Promise.resolve();
parentPort!.on('message', (msg: ToProducerThread) => {
  queue = queue.then(async () => {
    let reply: FromProducerThread;
    try {
      await handle(msg);
      reply = { id: msg.id, ok: true };
    } catch (err) {
      reply = { id: msg.id, ok: false, error: (err as Error).message };
    }
    parentPort!.postMessage(reply);
  });
});
