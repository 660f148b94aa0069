import type pg from 'pg';
import { parseStreamName } from '../../envelope.ts';
import { ConcurrencyError, StreamDeletedError, ValidationError } from '../../errors.ts';
import type { ExpectedRevision, StreamMetadata } from '../port.ts';
import { mapPgError } from './errors.ts';
import { RAW_TYPES, type RawRow } from './rows.ts';

/**
 * Stream metadata operations: truncation, soft delete, tombstone. They write keel_streams only
 * (events are never removed here: the log stays complete for the relay and the audit chain).
 */

const STATE_SQL = `
  select (select e.stream_position from keel_events e where e.stream_id = $1
           order by e.stream_position desc limit 1) as revision,
         m.truncate_before, m.soft_deleted_before, coalesce(m.tombstoned, false)
    from (select 1) one left join keel_streams m on m.stream_id = $1`;

interface StreamState {
  revision: number;
  truncateBefore: number | null;
  softDeletedBefore: number | null;
  tombstoned: boolean;
}

async function readState(db: pg.Pool | pg.PoolClient, streamId: string): Promise<StreamState> {
  const res = await db.query<RawRow>({ name: 'keel_store_stream_state', text: STATE_SQL, values: [streamId], rowMode: 'array', types: RAW_TYPES });
  const r = res.rows[0]!;
  return {
    revision: r[0] === null ? -1 : Number(r[0]),
    truncateBefore: r[1] === null ? null : Number(r[1]),
    softDeletedBefore: r[2] === null ? null : Number(r[2]),
    tombstoned: r[3] === 't',
  };
}

/** Present = has events that a read would show: not (soft-deleted without newer events). */
function isPresent(s: StreamState): boolean {
  return s.revision >= 0 && (s.softDeletedBefore === null || s.revision >= s.softDeletedBefore);
}

/** The same rules keel_append applies (migrations/store). */
export function checkExpected(streamId: string, expected: ExpectedRevision, revision: number, present: boolean): void {
  const actual = present ? revision : 'no_stream';
  const ok =
    expected === 'any' ||
    (expected === 'no_stream' && !present) ||
    (expected === 'stream_exists' && present) ||
    (typeof expected === 'number' && present && revision === expected);
  if (!ok) throw new ConcurrencyError(streamId, String(expected), actual);
}

function tenantOf(streamId: unknown): string {
  const name = typeof streamId === 'string' ? parseStreamName(streamId) : undefined;
  if (!name || !name.id) {
    throw new ValidationError(`streamId "${String(streamId)}" is not a stream name ({category}-{tenantId}-{id})`, 'streamId');
  }
  return name.tenantId;
}

function validExpected(expected: unknown): ExpectedRevision {
  if (expected === undefined) return 'any';
  if (expected === 'any' || expected === 'no_stream' || expected === 'stream_exists') return expected;
  if (Number.isSafeInteger(expected) && (expected as number) >= 0) return expected as number;
  throw new ValidationError("expectedRevision must be 'any', 'no_stream', 'stream_exists' or a revision >= 0", 'expectedRevision');
}

export async function truncateBefore(pool: pg.Pool, streamId: string, revision: number): Promise<void> {
  const tenantId = tenantOf(streamId);
  if (!Number.isSafeInteger(revision) || revision < 0) throw new ValidationError('revision must be a whole number >= 0', 'revision');
  let res: pg.QueryResult;
  try {
    res = await pool.query(
      `insert into keel_streams (stream_id, tenant_id, truncate_before) values ($1, $2, $3)
       on conflict (stream_id) do update
         set truncate_before = greatest(coalesce(keel_streams.truncate_before, 0), excluded.truncate_before), updated_at = now()
         where not keel_streams.tombstoned
       returning 1`,
      [streamId, tenantId, revision],
    );
  } catch (err) {
    throw mapPgError(err, 'truncateBefore');
  }
  if (res.rowCount === 0) throw new StreamDeletedError(streamId);
}

export async function deleteStream(
  pool: pg.Pool,
  streamId: string,
  options: { hard?: boolean; expectedRevision?: ExpectedRevision } = {},
): Promise<void> {
  const tenantId = tenantOf(streamId);
  const expected = validExpected(options.expectedRevision);
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw mapPgError(err, 'deleteStream');
  }
  let failed: Error | undefined;
  try {
    await client.query('begin');
    // Waits for appends in flight (they hold ROW SHARE) and holds new ones back until commit,
    // so the revision checked here is final and nothing is appended after a tombstone.
    await client.query('lock table keel_streams in exclusive mode');
    const state = await readState(client, streamId);
    if (state.tombstoned) throw new StreamDeletedError(streamId);
    checkExpected(streamId, expected, state.revision, isPresent(state));
    if (options.hard) {
      await client.query(
        `insert into keel_streams (stream_id, tenant_id, tombstoned) values ($1, $2, true)
         on conflict (stream_id) do update set tombstoned = true, updated_at = now()`,
        [streamId, tenantId],
      );
    } else {
      await client.query(
        `insert into keel_streams (stream_id, tenant_id, soft_deleted_before) values ($1, $2, $3)
         on conflict (stream_id) do update set soft_deleted_before = excluded.soft_deleted_before, updated_at = now()`,
        [streamId, tenantId, state.revision + 1],
      );
    }
    await client.query('commit');
  } catch (err) {
    failed = err as Error;
    await client.query('rollback').catch(() => undefined);
    throw mapPgError(err, 'deleteStream');
  } finally {
    // A connection that failed for a reason other than our own checks is not trusted again.
    const ours = failed instanceof StreamDeletedError || failed instanceof ConcurrencyError;
    client.release(failed && !ours ? failed : undefined);
  }
}

export async function getStreamMetadata(pool: pg.Pool, streamId: string): Promise<StreamMetadata> {
  if (typeof streamId !== 'string' || streamId.length === 0) throw new ValidationError('streamId must be a non-empty string', 'streamId');
  let state: StreamState;
  try {
    state = await readState(pool, streamId);
  } catch (err) {
    throw mapPgError(err, 'getStreamMetadata');
  }
  const meta: StreamMetadata = {
    streamId,
    revision: state.revision,
    deleted: state.tombstoned ? 'tombstone' : state.softDeletedBefore !== null && !isPresent(state) ? 'soft' : 'no',
  };
  const tenantId = parseStreamName(streamId)?.tenantId;
  if (tenantId) meta.tenantId = tenantId;
  // Reads start at the larger of the explicit truncation and the soft-delete point.
  const start = Math.max(state.truncateBefore ?? -1, state.softDeletedBefore ?? -1);
  if (start >= 0) meta.truncateBefore = start;
  return meta;
}
