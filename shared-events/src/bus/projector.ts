import type pg from 'pg';
import type { Logger } from 'pino';
import type { RecordedEvent } from '../envelope.ts';
import type { BusBatch, BusHandler } from './port.ts';

/**
 * A projector applies events to PostgreSQL read models effectively once: the events of a batch
 * and the projector's positions are written in ONE transaction, and an event whose global position
 * is not above its tenant's stored position is skipped.
 *
 * Why per-tenant positions: the bus keeps a tenant's events in global-log order, but a Kafka
 * partition can hold an event twice (the relay is at-least-once and re-publishes after a crash) and
 * a batch can be redelivered to another group member after a rebalance. A per-partition offset
 * would not recognise a re-published copy; the tenant's global position does, whichever bus, lane
 * or member delivers it. The rows are locked (FOR UPDATE) in the transaction, so two members that
 * briefly both hold a partition during a rebalance cannot both apply the same event.
 */
export interface ProjectorOptions {
  /** Where positions are stored; by convention the consumer group, e.g. `projector-audit`. */
  name: string;
  /** The read models' database (holding keel_projector_positions, see busMigrations). */
  pool: pg.Pool;
  /**
   * Applies new events, in order, inside the transaction (use `tx`, never the pool). Already-applied
   * events have been removed. Throwing rolls everything back; the batch is delivered again.
   */
  apply(events: RecordedEvent[], tx: pg.PoolClient, batch: BusBatch): Promise<void>;
  /** Only these types reach `apply`; the others still advance the tenant's position. */
  eventTypes?: string[];
  logger?: Logger;
}

export function projector(options: ProjectorOptions): BusHandler {
  const { name, pool } = options;
  const types = options.eventTypes ? new Set(options.eventTypes) : undefined;
  return async (batch) => {
    const tenants = [...new Set(batch.events.map((e) => e.tenantId))].sort();
    const client = await pool.connect();
    let released = false;
    try {
      await client.query('begin');
      // Rows for new tenants first (sorted: every transaction locks in the same order, no deadlocks).
      await client.query(
        `insert into keel_projector_positions (projector, tenant_id)
         select $1, t from unnest($2::text[]) as t on conflict do nothing`,
        [name, tenants],
      );
      const r = await client.query<{ tenant_id: string; position: string }>(
        `select tenant_id, position from keel_projector_positions
          where projector = $1 and tenant_id = any($2::text[]) order by tenant_id for update`,
        [name, tenants],
      );
      const positions = new Map(r.rows.map((row) => [row.tenant_id, Number(row.position)]));
      const fresh: RecordedEvent[] = [];
      for (const event of batch.events) {
        const at = positions.get(event.tenantId) ?? 0;
        if (event.globalPosition <= at) continue; // applied before (redelivery or a re-published copy)
        positions.set(event.tenantId, event.globalPosition);
        if (!types || types.has(event.type)) fresh.push(event);
      }
      if (fresh.length) await options.apply(fresh, client, batch);
      await client.query(
        `update keel_projector_positions p set position = v.position, updated_at = now()
           from unnest($2::text[], $3::bigint[]) as v(tenant_id, position)
          where p.projector = $1 and p.tenant_id = v.tenant_id and p.position <> v.position`,
        [name, tenants, tenants.map((t) => positions.get(t) ?? 0)],
      );
      await client.query('commit');
      options.logger?.debug(
        { projector: name, lane: batch.lane, events: batch.events.length, applied: fresh.length },
        'projected batch',
      );
    } catch (err) {
      const rolledBack = await client.query('rollback').then(
        () => true,
        () => false,
      );
      // A connection that cannot even roll back is broken: destroy it rather than pool it.
      client.release(rolledBack ? undefined : true);
      released = true;
      throw err;
    } finally {
      if (!released) client.release();
    }
  };
}

/** The stored position per tenant of a projector (for lag metrics, tests and operators). */
export async function projectorPositions(pool: pg.Pool | pg.PoolClient, name: string): Promise<Map<string, number>> {
  const r = await pool.query<{ tenant_id: string; position: string }>(
    'select tenant_id, position from keel_projector_positions where projector = $1',
    [name],
  );
  return new Map(r.rows.map((row) => [row.tenant_id, Number(row.position)]));
}

/** Forgets a projector's positions (a rebuild replays everything); pass the rebuild's transaction. */
export async function resetProjectorPositions(tx: pg.Pool | pg.PoolClient, name: string): Promise<void> {
  await tx.query('delete from keel_projector_positions where projector = $1', [name]);
}
