import type { RecordedEvent } from '../envelope.ts';
import type { AllFilter } from '../store/port.ts';

/**
 * The bus port: how projectors and connector runners receive events. Adapters: Kafka
 * (bus/kafka, the kafka and distributed profiles) and PostgreSQL (bus/postgres, the store's own
 * log with a checkpoint table; the embedded and postgres profiles).
 *
 * Guarantees, for every adapter:
 * - a consumer group (`projector-audit`, `runner-webhooks`, ...) sees every event at least once,
 *   and a tenant's events in the order of the store's global log;
 * - a batch holds events of one lane (a Kafka partition, or the whole log) in that order;
 * - what the handler acknowledges is not delivered to the group again, except after a crash
 *   between applying and acknowledging (hence `projector` stores its own positions, and runners
 *   use idempotency keys); what it does not acknowledge is delivered again;
 * - a tenant's event may be delivered again after later events of other tenants (redelivery), and
 *   the relay may publish an event twice (it is at-least-once): handlers dedupe by position.
 */
export interface BusBatch {
  group: string;
  /** In lane order. Never empty. */
  events: RecordedEvent[];
  /** Where the batch came from: `kafka:<partition>` or `log`. */
  lane: string;
  /** Keeps the group membership alive during a long batch (a no-op where not needed). */
  heartbeat(): Promise<void>;
  /** False once the consumer stops or loses the lane (rebalance): finish quickly, acknowledge what was done. */
  isRunning(): boolean;
}

/**
 * `applied` = how many events from the front of the batch were applied. Fewer than all: the
 * rest is delivered again after a backoff. Returning nothing acknowledges the whole batch; throwing
 * acknowledges nothing (and the batch is retried with backoff).
 */
export interface BatchAck {
  applied: number;
}

export type BusHandler = (batch: BusBatch) => Promise<BatchAck | void>;

export interface ConsumeOptions {
  /** Consumer group name, e.g. `projector-audit`. Its members share the work; each group sees every event. */
  group: string;
  handler: BusHandler;
  /** Only these events reach the handler (the others are acknowledged without it). */
  filter?: AllFilter;
  /** Where a group without a checkpoint starts: 'earliest' (default, the whole log) or 'latest'. */
  from?: 'earliest' | 'latest';
  /** Most events per handler call. Default 500. */
  maxBatchSize?: number;
  /**
   * Lanes handled at once by this member (Kafka: partitions; default 4). Batches of one lane are
   * never handled concurrently, so a tenant's order holds; handlers must only tolerate different
   * tenants at the same time (projector and runner do). The PostgreSQL bus has a single lane.
   */
  concurrency?: number;
}

export interface BusConsumer {
  readonly group: string;
  /** Resolves once the consumer is part of its group and receiving (Kafka: first partition assignment). */
  readonly ready: Promise<void>;
  /** Lanes this member currently owns (Kafka partitions as `kafka:<n>`; `log` on PostgreSQL while it holds the lease). */
  lanes(): string[];
  /** Graceful: finishes the batch in flight, acknowledges what was applied, leaves the group. */
  stop(): Promise<void>;
  /** Settles when the consumer ends: resolves after stop(), rejects on a fatal failure. */
  readonly done: Promise<void>;
}

/** A failed event parked for an operator, with why. */
export interface DeadLetter {
  group: string;
  event: RecordedEvent;
  reason: string;
  attempts: number;
}

export interface EventBus {
  readonly kind: 'kafka' | 'postgres';
  consume(options: ConsumeOptions): Promise<BusConsumer>;
  /** Kafka: produced to `keel.events.v1.dlq`; PostgreSQL: a row in keel_bus_dead_letters. */
  deadLetter(entry: DeadLetter): Promise<void>;
  /** Stops every consumer it started, then releases its connections. */
  close(): Promise<void>;
}
