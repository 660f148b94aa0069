/** The bus: port, Kafka and PostgreSQL adapters, projector and runner handlers. */
export type { BusBatch, BatchAck, BusHandler, ConsumeOptions, BusConsumer, DeadLetter, EventBus } from './port.ts';
export { createBus, busKindFor, busMigrations } from './create.ts';
export type { CreateBusOptions } from './create.ts';
export { createKafkaBus } from './kafka/bus.ts';
export type { KafkaBus, KafkaBusOptions } from './kafka/bus.ts';
export { cachingDefaultPartitioner, createKafkaClient, ensureTopics } from './kafka/client.ts';
export type { KafkaClientOptions, EnsureTopicsOptions } from './kafka/client.ts';
export {
  EVENTS_TOPIC,
  DEAD_LETTER_TOPIC,
  EVENTS_PARTITIONS,
  HEADERS as BUS_HEADERS,
  toKafkaMessage,
  fromKafkaMessage,
  matchesFilter,
} from './kafka/messages.ts';
export type { BusCodec } from './kafka/messages.ts';
export { createPostgresBus } from './postgres/bus.ts';
export type { PostgresBus, PostgresBusOptions, DeadLetterRecord } from './postgres/bus.ts';
export { projector, projectorPositions, resetProjectorPositions } from './projector.ts';
export type { ProjectorOptions } from './projector.ts';
export { runner, PermanentFailure } from './runner.ts';
export type { RunnerOptions, RunnerContext } from './runner.ts';
export { createLease, readCheckpoint } from './lease.ts';
export type { Lease, LeaseOptions, LeaseState } from './lease.ts';
