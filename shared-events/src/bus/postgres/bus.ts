import type pg from 'pg';
import type { Logger } from 'pino';
import type { RecordedEvent } from '../../envelope.ts';
import type { EventStore, Subscription } from '../../store/port.ts';
import { defaultLogger } from '../kafka/client.ts';
import { createLease } from '../lease.ts';
import type { BusConsumer, ConsumeOptions, DeadLetter, EventBus } from '../port.ts';

/**
 * The PostgreSQL bus (embedded and postgres profiles): no broker, each consumer group reads the
 * store's global log directly (store.subscribe: gap-safe catch-up, then live) from its checkpoint
 * in keel_bus_checkpoints (`group:<name>`).
 *
 * The whole log is one lane, so a group is served by one member at a time: the checkpoint row is
 * also a lease (see lease.ts). Other members of the group wait as standbys and take over when the
 * active one stops or dies. The checkpoint is fenced by the lease, so a member that lost it can
 * neither move it nor keep delivering.
 */
export interface PostgresBusOptions {
  store: EventStore;
  /** Database holding keel_bus_checkpoints and keel_bus_dead_letters (busMigrations). */
  pool: pg.Pool;
  logger?: Logger;
  /** A dead member's group moves to a standby after this. Default 10 s. */
  leaseTtlMs?: number;
  /** How often a caught-up consumer polls the log. Default 20 ms. */
  pollIntervalMs?: number;
  /** Backoff for a failing handler: initial, doubled up to max. Defaults 100 ms, 5 s. */
  retryBackoff?: { initialMs?: number; maxMs?: number };
}

export interface DeadLetterRecord {
  id: number;
  group: string;
  eventId: string;
  tenantId: string;
  streamId: string;
  globalPosition: number;
  type: string;
  reason: string;
  attempts: number;
  deadLetteredAt: Date;
  event: RecordedEvent;
}

export interface PostgresBus extends EventBus {
  readonly kind: 'postgres';
  readDeadLetters(options?: { group?: string; tenantId?: string; limit?: number }): Promise<DeadLetterRecord[]>;
}

class Stopped extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function createPostgresBus(options: PostgresBusOptions): PostgresBus {
  const { store, pool } = options;
  const logger = options.logger ?? defaultLogger('keel-bus');
  const leaseTtlMs = options.leaseTtlMs ?? 10_000;
  const pollIntervalMs = options.pollIntervalMs ?? 20;
  const backoffInitial = options.retryBackoff?.initialMs ?? 100;
  const backoffMax = options.retryBackoff?.maxMs ?? 5_000;
  const consumers = new Set<BusConsumer>();

  async function consume(co: ConsumeOptions): Promise<BusConsumer> {
    const { group, handler } = co;
    const log = logger.child({ group });
    const abort = new AbortController();
    let subscription: Subscription | undefined;
    let resolveReady!: () => void;
    const ready = new Promise<void>((r) => (resolveReady = r));
    const lease = createLease({
      pool,
      name: `group:${group}`,
      ttlMs: leaseTtlMs,
      onLost: (reason) => {
        log.warn({ reason }, 'lost the group lease; standing by');
        void subscription?.stop();
      },
    });
    const live = () => !abort.signal.aborted && lease.isHeld();

    const deliver = async (events: RecordedEvent[], position: number) => {
      let rest = events;
      let failures = 0;
      while (rest.length) {
        if (!live()) throw new Stopped();
        let applied = 0;
        try {
          const ack = await handler({
            group,
            events: rest,
            lane: 'log',
            heartbeat: async () => undefined,
            isRunning: live,
          });
          applied = ack ? Math.max(0, Math.min(rest.length, Math.floor(ack.applied))) : rest.length;
        } catch (err) {
          log.error(
            { tenantId: rest[0]?.tenantId, correlationId: rest[0]?.correlationId, err: (err as Error).message },
            'handler failed; retrying',
          );
        }
        if (applied > 0) {
          const to =
            applied === rest.length
              ? Math.max(position, rest[rest.length - 1]!.globalPosition)
              : rest[applied - 1]!.globalPosition;
          if (!(await lease.checkpoint(to))) throw new Stopped();
          rest = rest.slice(applied);
          failures = 0;
        }
        if (rest.length) {
          failures++;
          const until = Date.now() + Math.min(backoffMax, backoffInitial * 2 ** (failures - 1));
          while (Date.now() < until && live()) await sleep(Math.min(100, until - Date.now()));
        }
      }
    };

    const run = async () => {
      let failures = 0;
      while (!abort.signal.aborted) {
        const state = await lease.acquire(abort.signal);
        if (!state) break;
        let after = state.position;
        if (state.fencing === 1 && state.position === 0 && co.from === 'latest') {
          after = await store.headPosition();
          await lease.checkpoint(after);
        }
        log.info({ after }, 'consuming the log');
        resolveReady();
        subscription = store.subscribe(
          { after, filter: co.filter, batchSize: Math.max(1, co.maxBatchSize ?? 500), pollIntervalMs },
          async (events, ctx) => {
            if (events.length) await deliver(events, ctx.position);
            else if (ctx.position > after && live()) await lease.checkpoint(ctx.position); // filtered stretch
            after = ctx.position;
          },
        );
        try {
          if (!live()) await subscription.stop();
          await subscription.done;
          failures = 0;
        } catch (err) {
          if (!(err instanceof Stopped) && !abort.signal.aborted) {
            failures++;
            log.error({ err: (err as Error).message }, 'log subscription failed; resuming from the checkpoint');
            await sleep(Math.min(backoffMax, backoffInitial * 2 ** failures));
          }
        }
        subscription = undefined;
        if (abort.signal.aborted) break;
        // Lost the lease (or the subscription ended): go back to standing by.
      }
      await lease.release().catch(() => undefined);
    };

    const done = run();
    done.catch(() => undefined);
    const handle: BusConsumer = {
      group,
      ready,
      lanes: () => (lease.isHeld() ? ['log'] : []),
      stop: async () => {
        abort.abort();
        await subscription?.stop().catch(() => undefined);
        await done.catch(() => undefined);
        consumers.delete(handle);
      },
      done,
    };
    consumers.add(handle);
    return handle;
  }

  return {
    kind: 'postgres',
    consume,
    deadLetter: async (entry: DeadLetter) => {
      const e = entry.event;
      await pool.query(
        `insert into keel_bus_dead_letters
           (consumer_group, event_id, tenant_id, stream_id, global_position, event_type, reason, attempts, event)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          entry.group,
          e.eventId,
          e.tenantId,
          e.streamId,
          e.globalPosition,
          e.type,
          entry.reason.slice(0, 2000),
          entry.attempts,
          JSON.stringify(e),
        ],
      );
    },
    readDeadLetters: async (o = {}) => {
      const r = await pool.query<{
        id: string;
        consumer_group: string;
        event_id: string;
        tenant_id: string;
        stream_id: string;
        global_position: string;
        event_type: string;
        reason: string;
        attempts: number;
        dead_lettered_at: Date;
        event: RecordedEvent & { occurredAt: string; recordedAt: string };
      }>(
        `select * from keel_bus_dead_letters
          where ($1::text is null or consumer_group = $1) and ($2::text is null or tenant_id = $2)
          order by id limit $3`,
        [o.group ?? null, o.tenantId ?? null, o.limit ?? 100],
      );
      return r.rows.map((row) => ({
        id: Number(row.id),
        group: row.consumer_group,
        eventId: row.event_id,
        tenantId: row.tenant_id,
        streamId: row.stream_id,
        globalPosition: Number(row.global_position),
        type: row.event_type,
        reason: row.reason,
        attempts: row.attempts,
        deadLetteredAt: row.dead_lettered_at,
        event: { ...row.event, occurredAt: new Date(row.event.occurredAt), recordedAt: new Date(row.event.recordedAt) },
      }));
    },
    close: async () => {
      await Promise.all([...consumers].map((c) => c.stop()));
    },
  };
}
