import { randomUUID } from 'node:crypto';
import type pg from 'pg';

/**
 * The leased-work-queue statements both runners share. A work table has an id column, a `state`
 * ('pending' | 'in_flight' | finished states), `due_at`, `lease_token` and `updated_at`; a runner
 * holds the rows it leased in a map of id → lease token.
 */
export interface WorkTable {
  table: string;
  /** The id column (uuid). */
  id: string;
  /** The alias the table takes in the statements. */
  alias: string;
  /** The columns a claimed row returns, comma-separated. */
  returning: string;
}

/** Leases up to `limit` due rows (pending, or in flight with an expired lease) under one fresh token. */
export async function claimDue<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  t: WorkTable,
  limit: number,
  leaseInterval: string,
): Promise<R[]> {
  const { rows } = await pool.query<R>(
    `with due as (
         select ${t.id} from ${t.table}
          where state in ('pending', 'in_flight') and due_at <= now()
          order by due_at limit $1 for update skip locked)
       update ${t.table} ${t.alias} set state = 'in_flight', lease_token = $2, due_at = now() + $3::interval, updated_at = now()
         from due where ${t.alias}.${t.id} = due.${t.id}
       returning ${t.returning
         .split(', ')
         .map((c) => `${t.alias}.${c}`)
         .join(', ')}`,
    [limit, randomUUID(), leaseInterval],
  );
  return rows;
}

/** Deletes up to 10000 rows matching `finished` (an SQL condition) last updated before the retention period. */
export async function pruneFinished(
  pool: pg.Pool,
  t: WorkTable,
  finished: string,
  retentionHours: number,
): Promise<void> {
  await pool.query(
    `delete from ${t.table} where ${t.id} in (
           select ${t.id} from ${t.table} where ${finished} and updated_at < now() - $1::interval limit 10000)`,
    [`${retentionHours} hours`],
  );
}

/** Waits for the work in progress, at most `graceMs`. */
export async function settleRunning(running: Set<Promise<void>>, graceMs: number): Promise<void> {
  const grace = new Promise((r) => setTimeout(r, graceMs).unref());
  await Promise.race([Promise.all([...running]), grace]);
}

/**
 * Hands back every held row still in flight under its token: due at once, for whichever runner
 * comes next. Clears `held` before the first await. Returns how many rows were handed back.
 */
export async function handBack(pool: pg.Pool, t: WorkTable, held: Map<string, string>): Promise<number | null> {
  const ids = [...held.keys()];
  const tokens = ids.map((id) => held.get(id)!);
  held.clear();
  const r = await pool.query(
    `update ${t.table} ${t.alias} set state = 'pending', due_at = now(), lease_token = null, updated_at = now()
             from unnest($1::uuid[], $2::uuid[]) as x(id, token) where ${t.alias}.${t.id} = x.id and ${t.alias}.lease_token = x.token and ${t.alias}.state = 'in_flight'`,
    [ids, tokens],
  );
  return r.rowCount;
}

/** Tracks work on a held row: while it runs it is in `running`; when it settles the row is no longer held. */
export function track(held: Map<string, string>, running: Set<Promise<void>>, id: string, work: Promise<void>): void {
  const p = work.finally(() => {
    held.delete(id);
    running.delete(p);
  });
  running.add(p);
}
