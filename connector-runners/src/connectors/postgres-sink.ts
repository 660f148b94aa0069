import pg from 'pg';
import type { PostgresStep } from '../flows/definition.ts';
import type { Json } from '../flows/transform.ts';

/**
 * The PostgreSQL sink: upserts the step input (one object, or a list of objects) into a table of
 * the tenant's database by key. Exactly-once in effect: the upsert and a marker row keyed by the
 * step's idempotency key commit in one transaction, so a step re-run after a runner crash finds
 * the marker and writes nothing (not even an identical update that would fire triggers).
 */
export interface UpsertStatement {
  text: string;
  values: unknown[];
  rows: number;
}

export class SinkInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SinkInputError';
  }
}

export const MARKER_TABLE = 'keel_sink_applied';

const q = (ident: string): string => `"${ident.replace(/"/g, '""')}"`;

export function sinkRows(input: Json): Record<string, Json>[] {
  const list = Array.isArray(input) ? input : [input];
  if (list.length === 0) return [];
  return list.map((r, i) => {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new SinkInputError(`row ${i} is not an object`);
    return r;
  });
}

/** `insert ... on conflict (key) do update`; rows with the same key collapse to the last one (PostgreSQL refuses to touch a row twice in one statement). */
export function buildUpsert(step: PostgresStep, rows: Record<string, Json>[], defaultSchema?: string): UpsertStatement {
  const columns = step.columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))].sort();
  for (const c of columns)
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(c)) throw new SinkInputError(`field "${c}" is not a plain column name`);
  for (const k of step.key) if (!columns.includes(k)) throw new SinkInputError(`the rows have no key column ${k}`);
  const byKey = new Map<string, Record<string, Json>>();
  for (const [i, r] of rows.entries()) {
    for (const k of step.key)
      if (r[k] === undefined || r[k] === null) throw new SinkInputError(`row ${i} has no value for key column ${k}`);
    byKey.set(JSON.stringify(step.key.map((k) => r[k])), r);
  }
  const unique = [...byKey.values()];
  const values: unknown[] = [];
  const tuples = unique.map((r) => {
    const ps = columns.map((c) => {
      const v = r[c];
      // Objects and lists go in as JSON text; PostgreSQL casts it to json/jsonb columns.
      values.push(v === undefined ? null : v !== null && typeof v === 'object' ? JSON.stringify(v) : v);
      return `$${values.length}`;
    });
    return `(${ps.join(', ')})`;
  });
  const schema = step.schema ?? defaultSchema;
  const table = schema ? `${q(schema)}.${q(step.table)}` : q(step.table);
  const rest = columns.filter((c) => !step.key.includes(c));
  const action = rest.length
    ? `do update set ${rest.map((c) => `${q(c)} = excluded.${q(c)}`).join(', ')}`
    : 'do nothing';
  return {
    text: `insert into ${table} (${columns.map(q).join(', ')}) values ${tuples.join(', ')} on conflict (${step.key.map(q).join(', ')}) ${action}`,
    values,
    rows: unique.length,
  };
}

export interface SinkResult {
  /** False when the marker showed this step had already been applied. */
  applied: boolean;
  rows: number;
}

export interface SinkPools {
  pool(connectionString: string): pg.Pool;
  close(): Promise<void>;
}

export function createSinkPools(options: { maxPerDatabase?: number } = {}): SinkPools {
  const pools = new Map<string, pg.Pool>();
  return {
    pool(cs) {
      let p = pools.get(cs);
      if (!p) {
        p = new pg.Pool({
          connectionString: cs,
          max: options.maxPerDatabase ?? 4,
          idleTimeoutMillis: 30_000,
          connectionTimeoutMillis: 10_000,
        });
        // An idle client dropped by the server must not crash the process.
        p.on('error', () => undefined);
        pools.set(cs, p);
      }
      return p;
    },
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.end().catch(() => undefined)));
    },
  };
}

const markerReady = new WeakSet<pg.Pool>();

export async function applyUpsert(
  pool: pg.Pool,
  stmt: UpsertStatement,
  idempotencyKey: string,
  markerSchema?: string,
): Promise<SinkResult> {
  const marker = markerSchema ? `${q(markerSchema)}.${q(MARKER_TABLE)}` : q(MARKER_TABLE);
  if (!markerReady.has(pool)) {
    await pool
      .query(
        `create table if not exists ${marker} (idempotency_key text primary key, applied_at timestamptz not null default now())`,
      )
      .catch((e: { code?: string }) => {
        // Two runners creating it at once: one wins, the other sees a unique violation on the catalog.
        if (e.code !== '23505' && e.code !== '42P07') throw e;
      });
    markerReady.add(pool);
  }
  const client = await pool.connect();
  try {
    await client.query('begin');
    const m = await client.query(`insert into ${marker} (idempotency_key) values ($1) on conflict do nothing`, [
      idempotencyKey,
    ]);
    if (m.rowCount === 0) {
      await client.query('rollback');
      return { applied: false, rows: 0 };
    }
    if (stmt.rows > 0) await client.query(stmt.text, stmt.values);
    await client.query('commit');
    return { applied: true, rows: stmt.rows };
  } catch (e) {
    await client.query('rollback').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** SQLSTATE classes worth retrying: connection problems, serialization/deadlock, resources, operator intervention. */
export function isRetryablePgError(e: unknown): boolean {
  const code = (e as { code?: string }).code;
  if (!code) return true; // no SQLSTATE: a network-level failure
  return /^(08|40|53|57|58)/.test(code) || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT';
}
