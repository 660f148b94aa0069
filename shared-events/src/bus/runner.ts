import type { Logger } from 'pino';
import type { RecordedEvent } from '../envelope.ts';
import type { BusBatch, BusHandler, EventBus } from './port.ts';

/**
 * A runner performs a side effect per event (deliver a webhook, run a flow step): at-least-once.
 * A failing event is retried with exponential backoff; after `maxAttempts` it goes to the dead
 * letter (topic on Kafka, table on PostgreSQL) with the last error as the reason, and the runner
 * moves on, so one poisoned event never blocks its tenant forever.
 *
 * The side effect must be idempotent on `ctx.idempotencyKey` (`<runner>:<eventId>`): after a crash
 * or a rebalance an event can be performed again.
 */
export interface RunnerContext {
  /** 1 for the first try. */
  attempt: number;
  idempotencyKey: string;
  heartbeat(): Promise<void>;
}

export interface RunnerOptions {
  /** The consumer group, e.g. `runner-webhooks`; names the dead letters. */
  name: string;
  bus: Pick<EventBus, 'deadLetter'>;
  handle(event: RecordedEvent, ctx: RunnerContext): Promise<void>;
  /** Tries before the dead letter. Default 5. */
  maxAttempts?: number;
  /** Backoff between tries: initialMs * 2^(attempt-1), capped. Defaults 200 ms, 10 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Tenants served concurrently within a batch (each tenant's events stay in order). Default 1. */
  concurrency?: number;
  /** Only these types are handled; the others are acknowledged as they are. */
  eventTypes?: string[];
  logger?: Logger;
}

/** Throw this (or any error with `retryable: false`) when trying again cannot help: straight to the dead letter. */
export class PermanentFailure extends Error {
  readonly retryable = false;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentFailure';
  }
}

const isPermanent = (err: unknown) =>
  typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false;

export function runner(options: RunnerOptions): BusHandler {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const initialMs = options.backoff?.initialMs ?? 200;
  const maxMs = options.backoff?.maxMs ?? 10_000;
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const types = options.eventTypes ? new Set(options.eventTypes) : undefined;
  const log = options.logger;

  /** True when the event is done (performed or dead-lettered); false when we must stop (shutdown, no DLQ). */
  async function perform(event: RecordedEvent, batch: BusBatch): Promise<boolean> {
    const ctx = { idempotencyKey: `${options.name}:${event.eventId}`, heartbeat: batch.heartbeat };
    let lastError: unknown;
    let attempt = 0;
    while (attempt < maxAttempts) {
      attempt++;
      try {
        await options.handle(event, { ...ctx, attempt });
        return true;
      } catch (err) {
        lastError = err;
        log?.warn(
          {
            runner: options.name,
            tenantId: event.tenantId,
            correlationId: event.correlationId,
            eventId: event.eventId,
            attempt,
            err: errorMessage(err),
          },
          'side effect failed',
        );
        if (isPermanent(err)) break;
        if (attempt < maxAttempts && !(await pause(Math.min(maxMs, initialMs * 2 ** (attempt - 1)), batch)))
          return false;
      }
    }
    try {
      await options.bus.deadLetter({ group: options.name, event, reason: errorMessage(lastError), attempts: attempt });
      log?.error(
        {
          runner: options.name,
          tenantId: event.tenantId,
          correlationId: event.correlationId,
          eventId: event.eventId,
          attempts: attempt,
        },
        'event dead-lettered',
      );
      return true;
    } catch (err) {
      log?.error(
        { runner: options.name, tenantId: event.tenantId, eventId: event.eventId, err: errorMessage(err) },
        'dead letter failed',
      );
      return false;
    }
  }

  return async (batch) => {
    const done = new Array<boolean>(batch.events.length).fill(false);
    const lanes = new Map<string, number[]>();
    batch.events.forEach((e, i) => {
      if (types && !types.has(e.type)) {
        done[i] = true;
        return;
      }
      const lane = lanes.get(e.tenantId);
      if (lane) lane.push(i);
      else lanes.set(e.tenantId, [i]);
    });
    const queue = [...lanes.values()];
    const worker = async () => {
      for (let lane = queue.shift(); lane; lane = queue.shift()) {
        for (const i of lane) {
          if (!batch.isRunning() || !(await perform(batch.events[i]!, batch))) return;
          done[i] = true;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
    // Only a prefix can be acknowledged; anything after the first unfinished event comes again.
    let applied = 0;
    while (applied < done.length && done[applied]) applied++;
    return { applied };
  };
}

/** Waits, heart-beating; false when the consumer stopped meanwhile. */
async function pause(ms: number, batch: BusBatch): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!batch.isRunning()) return false;
    await new Promise((r) => setTimeout(r, Math.min(500, until - Date.now())));
    await batch.heartbeat();
  }
  return batch.isRunning();
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
