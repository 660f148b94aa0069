import pg from 'pg';
import type { RecordedEvent } from '../../envelope.ts';
import { StreamDeletedError, ValidationError } from '../../errors.ts';
import type { EventSchemaRegistry } from '../../schemas/registry-port.ts';
import type { AllFilter, ReadAllOptions, ReadAllResult, ReadStreamOptions } from '../port.ts';
import { mapPgError } from './errors.ts';
import { EVENT_COLUMNS, EVENT_COLUMN_COUNT, RAW_TYPES, toRecordedEvent, type RawRow } from './rows.ts';

/**
 * Reads. The global log is read gap-safe (see index.ts): rows come in global_position order
 * with a flag telling whether their transaction is older than the oldest transaction still
 * running; the reader stops at the first row that is not. Because positions are reserved in
 * transaction-id order, every row before a safe row is committed or will never exist.
 */

export interface ReadContext {
  pool: pg.Pool;
  registry?: EventSchemaRegistry;
}

const XMIN = '(select pg_snapshot_xmin(pg_current_snapshot()))';
const MAX_INT8 = '9223372036854775807';
/** The event columns of the window-facts row: all null. */
const NO_EVENT = new Array(EVENT_COLUMN_COUNT).fill('null').join(', ');

const streamSql = (direction: 'asc' | 'desc') => `
  with m as (
    select coalesce(bool_or(tombstoned), false) as tomb,
           coalesce(max(greatest(coalesce(truncate_before, 0), coalesce(soft_deleted_before, 0))), 0) as start
      from keel_streams where stream_id = $1)
  select ${EVENT_COLUMNS}, m.tomb from m left join lateral (
    select * from keel_events e
     where e.stream_id = $1 and not m.tomb
       and e.stream_position >= greatest($2::int8, m.start)
       and ($3::int8 is null or e.stream_position <= $3)
       and ($4::timestamptz is null or e.recorded_at <= $4)
     order by e.stream_position ${direction} limit $5) e on true`;
const STREAM_FORWARDS = streamSql('asc');
const STREAM_BACKWARDS = streamSql('desc');

const ALL_SQL = `select ${EVENT_COLUMNS}, e.transaction_id < ${XMIN}
  from keel_events e where e.global_position > $1 order by e.global_position limit $2`;

// Filtered: scan a window of positions (narrow rows), cut it at the first unsafe row, then fetch
// the matching events. The window bounds the work of one call when the filter is selective.
// The answer is the matching events, then one row of window facts (scanned, scanned_to, cut).
// Kept free of lateral joins: their estimates pushed this plan over jit_above_cost, and JIT
// compilation took longer than the query.
const FILTERED_SQL = `
  with w as materialized (
    select e.global_position, e.transaction_id < ${XMIN} as safe,
           ($3::text is null or e.tenant_id = $3)
             and ($4::text[] is null or e.type = any($4))
             and ($5::text[] is null or split_part(e.stream_id, '-', 1) = any($5)) as hit
      from keel_events e where e.global_position > $1 order by e.global_position limit $6
  ), c as materialized (
    select coalesce(min(global_position) filter (where not safe), ${MAX_INT8}) as upto, count(*) as scanned from w
  ), h as (
    select w.global_position from w, c where w.hit and w.global_position < c.upto order by w.global_position limit $2
  )
  select ${EVENT_COLUMNS}, null::bigint, null::bigint, null::boolean
    from h join keel_events e on e.global_position = h.global_position
  union all
  select ${NO_EVENT}, c.scanned,
         (select max(w.global_position) from w where w.global_position < c.upto), c.upto <> ${MAX_INT8}
    from c`;

const HEAD_SQL = `select global_position from keel_events where transaction_id < ${XMIN}
  order by global_position desc limit 1`;

function nonNegativeInt(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new ValidationError(`${field} must be a whole number >= 0`, field);
  }
  return value as number;
}

export async function readStream(ctx: ReadContext, streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
  if (typeof streamId !== 'string' || streamId.length === 0) throw new ValidationError('streamId must be a non-empty string', 'streamId');
  const from = nonNegativeInt(options.fromRevision, 'fromRevision') ?? 0;
  const to = nonNegativeInt(options.toRevision, 'toRevision');
  const max = nonNegativeInt(options.maxCount, 'maxCount');
  const upTo = options.upTo;
  if (upTo !== undefined && (!(upTo instanceof Date) || Number.isNaN(upTo.getTime()))) {
    throw new ValidationError('upTo must be a valid Date', 'upTo');
  }
  const direction = options.direction ?? 'forwards';
  if (direction !== 'forwards' && direction !== 'backwards') {
    throw new ValidationError("direction must be 'forwards' or 'backwards'", 'direction');
  }
  let res: pg.QueryResult<RawRow>;
  try {
    res = await ctx.pool.query<RawRow>({
      name: direction === 'forwards' ? 'keel_store_read_stream_f' : 'keel_store_read_stream_b',
      text: direction === 'forwards' ? STREAM_FORWARDS : STREAM_BACKWARDS,
      values: [streamId, from, to ?? null, upTo ? upTo.toISOString() : null, max ?? null],
      rowMode: 'array',
      types: RAW_TYPES,
    });
  } catch (err) {
    throw mapPgError(err, 'readStream');
  }
  if (res.rows[0]?.[EVENT_COLUMN_COUNT] === 't') throw new StreamDeletedError(streamId);
  const events: RecordedEvent[] = [];
  for (const r of res.rows) if (r[0] !== null) events.push(upcast(ctx, toRecordedEvent(r)));
  return events;
}

function normalizeFilter(filter: AllFilter | undefined): AllFilter | undefined {
  if (!filter) return undefined;
  const list = (v: unknown, field: string): string[] | undefined => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ValidationError(`${field} must be an array of strings`, field);
    return v as string[];
  };
  if (filter.tenantId !== undefined && (typeof filter.tenantId !== 'string' || filter.tenantId === '')) {
    throw new ValidationError('filter.tenantId must be a non-empty string', 'filter.tenantId');
  }
  const out: AllFilter = {};
  if (filter.tenantId !== undefined) out.tenantId = filter.tenantId;
  const types = list(filter.eventTypes, 'filter.eventTypes');
  if (types) out.eventTypes = types;
  const cats = list(filter.categories, 'filter.categories');
  if (cats) out.categories = cats;
  return out.tenantId === undefined && !out.eventTypes && !out.categories ? undefined : out;
}

export async function readAll(ctx: ReadContext, options: ReadAllOptions = {}): Promise<ReadAllResult> {
  const { events, position, isEnd } = await readAllDetailed(ctx, options);
  return { events, position, isEnd };
}

/**
 * readAll, plus `pending`: committed rows were seen beyond the safe point (their transaction
 * is younger than one still running), so more events are about to become readable.
 */
export async function readAllDetailed(ctx: ReadContext, options: ReadAllOptions = {}): Promise<ReadAllResult & { pending: boolean }> {
  const after = nonNegativeInt(options.after, 'after') ?? 0;
  const maxCount = nonNegativeInt(options.maxCount, 'maxCount') ?? 1000;
  if (maxCount < 1) throw new ValidationError('maxCount must be at least 1', 'maxCount');
  const filter = normalizeFilter(options.filter);
  try {
    return filter ? await readFiltered(ctx, after, maxCount, filter) : await readUnfiltered(ctx, after, maxCount);
  } catch (err) {
    throw mapPgError(err, 'readAll');
  }
}

async function readUnfiltered(ctx: ReadContext, after: number, maxCount: number): Promise<ReadAllResult & { pending: boolean }> {
  const events: RecordedEvent[] = [];
  let cut = false;
  let rows = 0;
  // Rows become events as they arrive, so this work overlaps the server producing the rest of
  // the page instead of following it (the client side is what bounds readAll).
  await streamRows(ctx.pool, { name: 'keel_store_read_all', text: ALL_SQL, values: [after, maxCount] }, (r) => {
    rows++;
    if (cut) return;
    if (r[EVENT_COLUMN_COUNT] !== 't') {
      cut = true; // this row's transaction may still have company below it: stop here
      return;
    }
    events.push(upcast(ctx, toRecordedEvent(r)));
  });
  const position = events.length ? events[events.length - 1]!.globalPosition : after;
  return { events, position, isEnd: cut || rows < maxCount, pending: cut };
}

/** Runs a query and hands each row over as soon as it is parsed. */
async function streamRows(
  pool: pg.Pool,
  config: { name: string; text: string; values: unknown[] },
  onRow: (row: RawRow) => void,
): Promise<void> {
  const client = await pool.connect();
  let failure: unknown;
  try {
    await new Promise<void>((resolve, reject) => {
      // rowMode is honoured by pg.Query at run time; its typings only list it on client.query configs
      const query = new pg.Query({ ...config, rowMode: 'array', types: RAW_TYPES } as pg.QueryConfig);
      query.on('row', (row: RawRow) => {
        if (failure !== undefined) return;
        try {
          onRow(row);
        } catch (err) {
          failure = err; // thrown inside node-pg's message handler it would escape; report at the end
        }
      });
      query.on('end', () => resolve());
      query.on('error', reject);
      client.query(query);
    });
  } catch (err) {
    client.release(err as Error);
    throw err;
  }
  client.release();
  if (failure !== undefined) throw failure;
}

async function readFiltered(
  ctx: ReadContext,
  after: number,
  maxCount: number,
  filter: AllFilter,
): Promise<ReadAllResult & { pending: boolean }> {
  const window = Math.max(maxCount, 10_000);
  const res = await ctx.pool.query<RawRow>({
    name: 'keel_store_read_all_filtered',
    text: FILTERED_SQL,
    values: [after, maxCount, filter.tenantId ?? null, filter.eventTypes ?? null, filter.categories ?? null, window],
    rowMode: 'array',
    types: RAW_TYPES,
  });
  const events: RecordedEvent[] = [];
  let meta: RawRow | undefined;
  for (const r of res.rows) {
    if (r[0] === null) meta = r;
    else events.push(upcast(ctx, toRecordedEvent(r)));
  }
  events.sort((a, b) => a.globalPosition - b.globalPosition);
  const scanned = Number(meta![EVENT_COLUMN_COUNT]);
  const scannedTo = meta![EVENT_COLUMN_COUNT + 1] ?? null;
  const cut = meta![EVENT_COLUMN_COUNT + 2] === 't';
  if (events.length === maxCount) {
    return { events, position: events[events.length - 1]!.globalPosition, isEnd: false, pending: cut };
  }
  // Everything safe in the window was looked at: resume after it, matching or not.
  return { events, position: scannedTo === null ? after : Number(scannedTo), isEnd: cut || scanned < window, pending: cut };
}

export async function headPosition(ctx: ReadContext): Promise<number> {
  try {
    const res = await ctx.pool.query<RawRow>({ name: 'keel_store_head', text: HEAD_SQL, rowMode: 'array', types: RAW_TYPES });
    return res.rows.length ? Number(res.rows[0]![0]) : 0;
  } catch (err) {
    throw mapPgError(err, 'headPosition');
  }
}

function upcast(ctx: ReadContext, e: RecordedEvent): RecordedEvent {
  return ctx.registry ? ctx.registry.upcast(e) : e;
}
