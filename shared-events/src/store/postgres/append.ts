import type pg from 'pg';
import type { ActorKind, EventData, NewEvent, RecordedEvent } from '../../envelope.ts';
import { parseStreamName } from '../../envelope.ts';
import { ConcurrencyError, KeelError, StreamDeletedError, UnavailableError, ValidationError } from '../../errors.ts';
import { isUuid, uuidv7s } from '../../ids.ts';
import type { EventSchemaRegistry } from '../../schemas/registry-port.ts';
import type { ExpectedRevision, StreamAppend } from '../port.ts';
import { int4Array, int8Array, textArray, TextArrayBuilder, timestamptzArray, uuidArray } from './binary.ts';
import { classifyAppendError, mapPgError, type AppendFailure } from './errors.ts';
import type { RevisionCache } from './revision-cache.ts';
import { EVENT_COLUMNS, RAW_TYPES, toRecordedEvent, type RawRow } from './rows.ts';

/**
 * The write path shared by appendToStream and appendBatch: validate and normalize in memory,
 * then one call of keel_append (one statement, one transaction, one round trip) with every
 * column as a binary array. Conflicts and duplicate ids are sorted out afterwards, off the
 * fast path: the common case pays no idempotency lookup, the unique index on event_id is the
 * check.
 */

export interface AppendContext {
  pool: pg.Pool;
  registry?: EventSchemaRegistry;
  /** Called after a commit that stored events (wakes subscriptions). */
  onAppended(lastPosition: number): void;
  /** Revisions this store committed, sent as hints that spare keel_append its index probes. */
  revisions?: RevisionCache;
  /** Takes turns among large calls for their preparation (see PrepareLane). */
  lane?: PrepareLane;
}

/**
 * Large calls (more than one SLICE of events) prepare one after another, not interleaved.
 *
 * Why: preparing yields to the event loop between slices. Two batches prepared at once then
 * finish together, are sent together and run on the server together, while the client waits
 * for both: the client's and the server's work alternate instead of overlapping, and on a
 * 2-core machine a core idles in each phase. Taking turns, a batch is sent as soon as it is
 * ready and the next one is prepared while the server inserts it (22.6 -> 18.2 ms per 1,000-event
 * call with two in flight; see the store README). Small calls never wait: they prepare within one
 * turn of the event loop.
 */
export class PrepareLane {
  private busy = false;
  private readonly waiting: (() => void)[] = [];

  async acquire(): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /**
   * Hands the lane to the next waiter on a later turn of the event loop (setImmediate), after
   * the releasing call has built its parameters and written its query to the socket (those
   * steps run on the microtask and nextTick queues, which drain first).
   */
  release(): void {
    const next = this.waiting.shift();
    if (next) setImmediate(next);
    else this.busy = false;
  }
}

interface PreparedEvent {
  eventId: string;
  type: string;
  schemaVersion: number;
  tenantId: string;
  data: EventData;
  /** Where its JSON text sits in the call's JSON column (see TextArrayBuilder). */
  jsonAt: number;
  actorKind: ActorKind;
  actorId: string;
  occurredMs: number;
  correlationId: string | undefined;
  causationId: string | undefined;
  traceparent: string | undefined;
  stream: PreparedStream;
  /** 0-based place within its stream's part of the call. */
  offset: number;
}

interface PreparedStream {
  streamId: string;
  expected: ExpectedRevision;
  events: PreparedEvent[];
}

export interface AppendOutcome {
  /** Per input append, in input order. */
  streams: { streamId: string; nextExpectedRevision: number }[];
  /** Highest global position among the call's events (new or already stored); 0 without events. */
  globalPosition: number;
  appended: number;
  /** Every event of the call in input order, as recorded (only when asked for). */
  events?: RecordedEvent[];
}

const EXPECTED_CODE = { no_stream: -1, any: -2, stream_exists: -3 } as const;
const MAX_ATTEMPTS = 25;
const ACTOR_KINDS: readonly string[] = ['user', 'apiKey', 'connector', 'system'];

const APPEND_SQL = `select first_position, base_revisions, recorded_at_ms
  from keel_append($1::text[], $2::int8[], $3::int4[], $4::int4[], $5::text[], $6::uuid[], $7::text[],
                   $8::int4[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[],
                   $14::text[], $15::text[], $16::text[], $17::int8[])`;

export async function append(ctx: AppendContext, appends: StreamAppend[], withEvents: boolean): Promise<AppendOutcome> {
  const { streams, order, inputs, json } = await prepare(appends, ctx.registry, ctx.lane);
  if (streams.length === 0) return { streams: [], globalPosition: 0, appended: 0, ...(withEvents ? { events: [] } : {}) };
  let pending = streams;
  const stored = new Map<string, RecordedEvent>(); // replayed (already stored) events by id
  let written: { first: number; recordedAt: Date; bases: Map<PreparedStream, number>; events: PreparedEvent[] } | undefined;
  const cache = ctx.revisions;
  let hinting = cache?.beginCall() ?? false;

  for (let attempt = 1; ; attempt++) {
    const hints = hinting ? cache!.hintsFor(pending) : undefined;
    try {
      written = await callAppend(ctx.pool, pending, order, json, hints);
      break;
    } catch (err) {
      const failure = classifyAppendError(err);
      if (failure.kind === 'other' || failure.kind === 'unavailable') {
        cache?.forget(pending.map((s) => s.streamId)); // committed or not: unknown
        throw mapPgError(err, 'append');
      }
      if (hints && failedOnHint(failure, err, pending, hints)) {
        // Another writer moved a hinted stream (or a hint made a verdict unsure): retry the
        // same call at once with every revision read from the index.
        cache!.stale(pending.map((s) => s.streamId));
        hinting = false;
        continue;
      }
      // Whatever went wrong, events already stored under our ids mean a retried call: answer
      // those streams from the store and go on with the rest.
      const found = await lookupStored(ctx.pool, pending);
      if (found.size > 0) {
        for (const [id, e] of found) stored.set(id, e);
        pending = pending.filter((s) => !isReplayed(s, found));
        if (pending.length === 0) break;
        continue;
      }
      if (attempt >= MAX_ATTEMPTS) throw finalError(failure, err);
      if (failure.kind === 'conflict') {
        throw new ConcurrencyError(failure.streamId, formatExpected(failure.expected), failure.actual < 0 ? 'no_stream' : failure.actual);
      }
      if (failure.kind === 'deleted') throw new StreamDeletedError(failure.streamId);
      // duplicate-id without a stored event (its writer rolled back), a lost race for a
      // revision, a serialization failure: all retry from a fresh look at the streams.
      await sleep(Math.random() * Math.min(50, attempt * 2));
    }
  }

  if (written && cache) {
    for (const [stream, base] of written.bases) {
      const revision = base + stream.events.length;
      if (revision >= 0) cache.set(stream.streamId, revision);
    }
  }
  if (written && written.events.length > 0) ctx.onAppended(written.first + written.events.length - 1);
  return outcome(inputs, order, written, stored, withEvents);
}

// ------------------------------------------------------------------------------------ prepare

interface Input {
  stream: PreparedStream;
  /** Number of the stream's events in the call up to and including this input. */
  end: number;
}

/** Events validated and encoded between two turns of the event loop. */
const SLICE = 256;

/**
 * Validates and normalizes a whole call, yielding to the event loop every SLICE events: a
 * 1,000-event batch is ~10 ms of CPU, and holding the loop that long would stall the socket
 * write of the batch sent just before (the server then waits for its input) and every other
 * request of the process.
 */
async function prepare(appends: StreamAppend[], registry: EventSchemaRegistry | undefined, lane: PrepareLane | undefined) {
  if (!Array.isArray(appends)) throw new ValidationError('appends must be an array', 'appends');
  let count = 0; // malformed appends are refused in prepareAll
  for (const a of appends) if (a && Array.isArray(a.events)) count += a.events.length;
  // Only a call that yields between slices can interleave with another (see PrepareLane).
  if (!lane || count <= SLICE) return prepareAll(appends, registry, count);
  await lane.acquire();
  try {
    return await prepareAll(appends, registry, count);
  } finally {
    lane.release();
  }
}

/** prepare's work; `count`: the call's events. */
async function prepareAll(appends: StreamAppend[], registry: EventSchemaRegistry | undefined, count: number) {
  const streams: PreparedStream[] = [];
  const byId = new Map<string, PreparedStream>();
  const order: PreparedEvent[] = [];
  const inputs: Input[] = [];
  const ids = new Set<string>();
  let json: TextArrayBuilder | undefined; // made at the first event, sized from its JSON
  const nowMs = Date.now();
  let sinceYield = 0;
  // Ids for events that come without one, drawn up to SLICE at a time (one random draw each).
  let remaining = count;
  let idPool: string[] = [];
  let nextInPool = 0;
  const newId = () => {
    if (nextInPool === idPool.length) {
      idPool = uuidv7s(Math.max(1, Math.min(SLICE, remaining)));
      nextInPool = 0;
    }
    return idPool[nextInPool++]!;
  };

  for (let appendIndex = 0; appendIndex < appends.length; appendIndex++) {
    const a = appends[appendIndex]!;
    const at = { appendIndex };
    if (!a || typeof a !== 'object') throw new ValidationError(`appends[${appendIndex}] must be an object`, 'appends', at);
    const streamId = a.streamId;
    const name = typeof streamId === 'string' ? parseStreamName(streamId) : undefined;
    if (!name || !name.id) {
      throw new ValidationError(
        `streamId "${String(streamId)}" is not a stream name ({category}-{tenantId}-{id})`,
        'streamId',
        { field: 'streamId', ...at },
      );
    }
    const expected = a.expectedRevision ?? 'any';
    if (!(expected in EXPECTED_CODE) && !(Number.isSafeInteger(expected) && (expected as number) >= 0)) {
      throw new ValidationError(
        `expectedRevision of ${streamId} must be 'any', 'no_stream', 'stream_exists' or a revision >= 0`,
        'expectedRevision',
        { field: 'expectedRevision', streamId, ...at },
      );
    }
    if (!Array.isArray(a.events)) {
      throw new ValidationError(`events of ${streamId} must be an array`, 'events', { field: 'events', streamId, ...at });
    }
    let stream = byId.get(streamId);
    if (stream) {
      // A batch may name a stream again (two records of one entity): the later part just
      // follows the earlier one, which only makes sense without its own expectation.
      if (expected !== 'any') {
        throw new ValidationError(
          `stream ${streamId} appears more than once in the batch; only its first append may carry an expectedRevision`,
          'expectedRevision',
          { field: 'expectedRevision', streamId, ...at },
        );
      }
    } else {
      stream = { streamId, expected, events: [] };
      byId.set(streamId, stream);
      streams.push(stream);
    }
    for (let eventIndex = 0; eventIndex < a.events.length; eventIndex++) {
      if (++sinceYield === SLICE) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const ev = a.events[eventIndex]!;
      const p = prepareEvent(ev, stream, name.tenantId, registry, nowMs, newId, appendIndex, eventIndex);
      const text = jsonOf(ev, p.data, stream.streamId, appendIndex, eventIndex);
      // Room for every remaining event at this one's size, plus a quarter; it doubles if short.
      json ??= new TextArrayBuilder((remaining * (text.length + 4) * 5) / 4);
      p.jsonAt = json.add(text);
      remaining--;
      if (ids.has(p.eventId)) {
        throw new ValidationError(`eventId ${p.eventId} appears twice in one append`, 'eventId', {
          field: 'eventId',
          streamId,
          eventId: p.eventId,
          ...at,
          eventIndex,
        });
      }
      ids.add(p.eventId);
      stream.events.push(p);
      order.push(p);
    }
    inputs.push({ stream, end: stream.events.length });
  }
  return { streams, order, inputs, json: json ?? new TextArrayBuilder(0) };
}

/** The ValidationError of one event, naming the field and where the event sits in the call. */
function invalid(streamId: string, appendIndex: number, eventIndex: number, field: string, message: string): ValidationError {
  return new ValidationError(`event ${eventIndex} of ${streamId}: ${field} ${message}`, field, {
    field,
    streamId,
    appendIndex,
    eventIndex,
  });
}

function isActorKind(kind: unknown): kind is ActorKind {
  return kind === 'user' || kind === 'apiKey' || kind === 'connector' || kind === 'system';
}

// Runs once per event of every append (a million times for a million-event ingest), so it
// allocates only what it keeps.
function prepareEvent(
  ev: NewEvent,
  stream: PreparedStream,
  streamTenant: string,
  registry: EventSchemaRegistry | undefined,
  nowMs: number,
  newId: () => string,
  appendIndex: number,
  eventIndex: number,
): PreparedEvent {
  const streamId = stream.streamId;
  if (!ev || typeof ev !== 'object') throw invalid(streamId, appendIndex, eventIndex, 'event', 'must be an object');
  let eventId = ev.eventId;
  if (eventId === undefined) {
    eventId = newId();
  } else if (typeof eventId !== 'string' || !isUuid(eventId)) {
    throw invalid(streamId, appendIndex, eventIndex, 'eventId', 'must be a UUID');
  } else {
    eventId = eventId.toLowerCase();
  }
  const type = ev.type;
  if (typeof type !== 'string' || type.length === 0 || type.length > 200) {
    throw invalid(streamId, appendIndex, eventIndex, 'type', 'must be a non-empty string');
  }
  const tenantId = ev.tenantId;
  if (tenantId !== streamTenant) {
    throw invalid(
      streamId,
      appendIndex,
      eventIndex,
      'tenantId',
      typeof tenantId === 'string' && tenantId.length > 0
        ? `is "${tenantId}" but the stream belongs to tenant "${streamTenant}"`
        : 'must be a non-empty string',
    );
  }
  const actor = ev.actor as { kind?: unknown; id?: unknown } | undefined;
  if (!actor || typeof actor !== 'object') throw invalid(streamId, appendIndex, eventIndex, 'actor', 'must be {kind, id}');
  const actorKind = actor.kind;
  if (!isActorKind(actorKind)) throw invalid(streamId, appendIndex, eventIndex, 'actor.kind', `must be one of ${ACTOR_KINDS.join(', ')}`);
  const actorId = actor.id;
  if (typeof actorId !== 'string' || actorId.length === 0) throw invalid(streamId, appendIndex, eventIndex, 'actor.id', 'must be a non-empty string');
  const data = ev.data;
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw invalid(streamId, appendIndex, eventIndex, 'data', 'must be an object');
  let occurredMs = nowMs;
  if (ev.occurredAt !== undefined) {
    occurredMs = ev.occurredAt instanceof Date ? ev.occurredAt.getTime() : NaN;
    if (Number.isNaN(occurredMs)) throw invalid(streamId, appendIndex, eventIndex, 'occurredAt', 'must be a valid Date');
  }
  const { correlationId, causationId, traceparent } = ev;
  if (correlationId != null && typeof correlationId !== 'string') throw invalid(streamId, appendIndex, eventIndex, 'correlationId', 'must be a string');
  if (causationId != null && typeof causationId !== 'string') throw invalid(streamId, appendIndex, eventIndex, 'causationId', 'must be a string');
  if (traceparent != null && typeof traceparent !== 'string') throw invalid(streamId, appendIndex, eventIndex, 'traceparent', 'must be a string');

  let schemaVersion = ev.schemaVersion;
  if (registry) {
    try {
      schemaVersion ??= registry.latestVersion(type);
      registry.validate(type, schemaVersion, data);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      const field = err.field ?? 'data';
      throw new ValidationError(`event ${eventIndex} of ${streamId} (${type}): ${err.message}`, field, {
        ...(typeof err.details === 'object' && err.details !== null ? (err.details as object) : {}),
        field,
        streamId,
        appendIndex,
        eventIndex,
        eventId,
        type,
      });
    }
  } else {
    schemaVersion ??= 1;
  }
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion < 1) {
    throw invalid(streamId, appendIndex, eventIndex, 'schemaVersion', 'must be a positive integer');
  }

  return {
    eventId,
    type,
    schemaVersion,
    tenantId,
    data,
    jsonAt: -1,
    actorKind,
    actorId,
    occurredMs,
    correlationId: correlationId ?? undefined,
    causationId: causationId ?? undefined,
    traceparent: traceparent ?? undefined,
    stream,
    offset: stream.events.length,
  };
}

/** The event's data as JSON text: its dataJson when given (checked to be an object's), else stringified. */
function jsonOf(ev: NewEvent, data: EventData, streamId: string, appendIndex: number, eventIndex: number): string {
  const given = ev.dataJson;
  if (given === undefined) {
    try {
      return JSON.stringify(data);
    } catch (err) {
      throw invalid(streamId, appendIndex, eventIndex, 'data', `is not JSON-serializable: ${(err as Error).message}`);
    }
  }
  if (typeof given !== 'string' || given.charCodeAt(0) !== 0x7b /* { */) {
    throw invalid(streamId, appendIndex, eventIndex, 'dataJson', 'must be the JSON text of data (an object)');
  }
  return given;
}

// --------------------------------------------------------------------------------------- call

/** `hints`: per stream, its revision as this store last committed it, or -1 (see RevisionCache). */
async function callAppend(
  pool: pg.Pool,
  streams: PreparedStream[],
  order: PreparedEvent[],
  json: TextArrayBuilder,
  hints: number[] | undefined,
) {
  const index = new Map<PreparedStream, number>();
  streams.forEach((s, i) => index.set(s, i + 1));
  const events = index.size === 0 ? [] : order.length === 0 ? order : order.filter((e) => index.has(e.stream));
  // One pass gathers the per-event columns (this runs for every event of every ingest).
  const n = events.length;
  const col = {
    stream: new Array<number>(n),
    offset: new Array<number>(n),
    streamId: new Array<string>(n),
    eventId: new Array<string>(n),
    type: new Array<string>(n),
    version: new Array<number>(n),
    tenant: new Array<string>(n),
    occurred: new Array<number>(n),
    actorKind: new Array<string>(n),
    actorId: new Array<string>(n),
    correlation: new Array<string | undefined>(n),
    causation: new Array<string | undefined>(n),
    traceparent: new Array<string | undefined>(n),
  };
  for (let i = 0; i < n; i++) {
    const e = events[i]!;
    col.stream[i] = index.get(e.stream)!;
    col.offset[i] = e.offset;
    col.streamId[i] = e.stream.streamId;
    col.eventId[i] = e.eventId;
    col.type[i] = e.type;
    col.version[i] = e.schemaVersion;
    col.tenant[i] = e.tenantId;
    col.occurred[i] = e.occurredMs;
    col.actorKind[i] = e.actorKind;
    col.actorId[i] = e.actorId;
    col.correlation[i] = e.correlationId;
    col.causation[i] = e.causationId;
    col.traceparent[i] = e.traceparent;
  }
  const values = [
    textArray(streams.map((s) => s.streamId)),
    int8Array(streams.map((s) => (typeof s.expected === 'number' ? s.expected : EXPECTED_CODE[s.expected]))),
    int4Array(col.stream),
    int4Array(col.offset),
    textArray(col.streamId),
    uuidArray(col.eventId),
    textArray(col.type),
    int4Array(col.version),
    textArray(col.tenant),
    timestamptzArray(col.occurred),
    textArray(col.actorKind),
    textArray(col.actorId),
    textArray(col.correlation),
    textArray(col.causation),
    textArray(col.traceparent),
    // Every event (a first attempt): the column as built; a retry of some streams: a copy of theirs.
    n === json.length ? json.toBuffer() : json.subset(events.map((e) => e.jsonAt)),
    hints ? int8Array(hints) : null,
  ];
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw mapPgError(err, 'connect');
  }
  let res: pg.QueryResult<RawRow>;
  try {
    res = await client.query<RawRow>({ name: 'keel_store_append', text: APPEND_SQL, values, rowMode: 'array', types: RAW_TYPES });
  } catch (err) {
    // Our own refusals leave the session clean; anything unexpected (a cancel, a broken
    // socket) may not, e.g. in theory with the position lock held: drop that connection.
    const kind = classifyAppendError(err).kind;
    client.release(kind === 'other' || kind === 'unavailable' ? (err as Error) : undefined);
    throw err;
  }
  client.release();
  const row = res.rows[0]!;
  const bases = new Map<PreparedStream, number>();
  parseInt8Array(row[1]).forEach((b, i) => bases.set(streams[i]!, b));
  return { first: Number(row[0] ?? 0), recordedAt: new Date(Math.round(Number(row[2]))), bases, events };
}

/**
 * Whether a failed hinted call may have failed because of a hint: the stream that lost a
 * revision race, or was judged in conflict, was sent with one. (A conflict judged from a hint
 * may name the wrong actual revision when the stream was soft-deleted since.)
 */
function failedOnHint(failure: AppendFailure, err: unknown, streams: PreparedStream[], hints: number[]): boolean {
  let streamId: string | undefined;
  if (failure.kind === 'conflict') streamId = failure.streamId;
  else if (failure.kind === 'revision-race') streamId = raceKey(err)?.streamId;
  else return false;
  const i = streams.findIndex((s) => s.streamId === streamId);
  // Not found: the detail could not be read; only a retry without hints can tell.
  return i < 0 || hints[i]! >= 0;
}

/** The key of a unique violation on (stream_id, stream_position), read from its detail. */
function raceKey(err: unknown): { streamId: string; position: number } | undefined {
  const m = /=\((.*), (\d+)\)/.exec((err as { detail?: string }).detail ?? '');
  return m ? { streamId: m[1]!, position: Number(m[2]) } : undefined;
}

function parseInt8Array(text: string | null | undefined): number[] {
  if (!text || text === '{}') return [];
  return text.slice(1, -1).split(',').map(Number);
}

// ------------------------------------------------------------------------------- idempotency

async function lookupStored(pool: pg.Pool, streams: PreparedStream[]): Promise<Map<string, RecordedEvent>> {
  const ids = streams.flatMap((s) => s.events.map((e) => e.eventId));
  const found = new Map<string, RecordedEvent>();
  if (ids.length === 0) return found;
  let res: pg.QueryResult<RawRow>;
  try {
    res = await pool.query<RawRow>({
      text: `select ${EVENT_COLUMNS} from keel_events e where e.event_id = any($1::uuid[])`,
      values: [uuidArray(ids)],
      rowMode: 'array',
      types: RAW_TYPES,
    });
  } catch (err) {
    throw mapPgError(err, 'idempotency lookup');
  }
  for (const r of res.rows) {
    const e = toRecordedEvent(r);
    found.set(e.eventId, e);
  }
  return found;
}

/**
 * A stream part whose events are all stored in that stream is a retry of an earlier call: it
 * stores nothing and answers as then. Some but not all, or stored in another stream, is a
 * caller bug (ids reused for different events), and is refused.
 */
function isReplayed(stream: PreparedStream, found: Map<string, RecordedEvent>): boolean {
  if (stream.events.length === 0) return false;
  let hits = 0;
  for (const e of stream.events) {
    const s = found.get(e.eventId);
    if (!s) continue;
    if (s.streamId !== stream.streamId) {
      throw new ValidationError(
        `eventId ${e.eventId} is already stored in stream ${s.streamId}, not ${stream.streamId}`,
        'eventId',
        { field: 'eventId', eventId: e.eventId, streamId: stream.streamId, storedIn: s.streamId },
      );
    }
    hits++;
  }
  if (hits === 0) return false;
  if (hits < stream.events.length) {
    throw new ValidationError(
      `${hits} of the ${stream.events.length} events for ${stream.streamId} are already stored: ` +
        'an append is either all new events or an exact retry',
      'eventId',
      { field: 'eventId', streamId: stream.streamId, stored: hits, total: stream.events.length },
    );
  }
  return true;
}

// ------------------------------------------------------------------------------------ outcome

function outcome(
  inputs: Input[],
  order: PreparedEvent[],
  written: { first: number; recordedAt: Date; bases: Map<PreparedStream, number>; events: PreparedEvent[] } | undefined,
  stored: Map<string, RecordedEvent>,
  withEvents: boolean,
): AppendOutcome {
  const newPosition = new Map<PreparedEvent, number>();
  written?.events.forEach((e, i) => newPosition.set(e, written.first + i));
  let globalPosition = 0;
  for (const p of newPosition.values()) globalPosition = Math.max(globalPosition, p);
  for (const e of order) {
    const s = stored.get(e.eventId);
    if (s && !newPosition.has(e)) globalPosition = Math.max(globalPosition, s.globalPosition);
  }

  const streams = inputs.map(({ stream, end }) => {
    const base = written?.bases.get(stream);
    if (base !== undefined) return { streamId: stream.streamId, nextExpectedRevision: base + end };
    // Replayed: the revision the first call answered, read from the stored events.
    const firstStored = stored.get(stream.events[0]!.eventId)!.streamPosition;
    const last = end > 0 ? stored.get(stream.events[end - 1]!.eventId)!.streamPosition : firstStored - 1;
    return { streamId: stream.streamId, nextExpectedRevision: last };
  });

  const result: AppendOutcome = { streams, globalPosition, appended: newPosition.size };
  if (withEvents) {
    result.events = order.map((e) => {
      const s = stored.get(e.eventId);
      if (s && !newPosition.has(e)) return s;
      const recorded: RecordedEvent = {
        eventId: e.eventId,
        type: e.type,
        schemaVersion: e.schemaVersion,
        tenantId: e.tenantId,
        streamId: e.stream.streamId,
        streamPosition: written!.bases.get(e.stream)! + 1 + e.offset,
        globalPosition: newPosition.get(e)!,
        occurredAt: new Date(e.occurredMs),
        recordedAt: written!.recordedAt,
        actor: { kind: e.actorKind, id: e.actorId },
        data: e.data,
      };
      if (e.correlationId !== undefined) recorded.correlationId = e.correlationId;
      if (e.causationId !== undefined) recorded.causationId = e.causationId;
      if (e.traceparent !== undefined) recorded.traceparent = e.traceparent;
      return recorded;
    });
  }
  return result;
}

// ------------------------------------------------------------------------------------ helpers

export function formatExpected(code: number | ExpectedRevision): string {
  if (typeof code === 'string') return code;
  if (code === -1) return 'no_stream';
  if (code === -2) return 'any';
  if (code === -3) return 'stream_exists';
  return String(code);
}

function finalError(failure: AppendFailure, err: unknown): KeelError {
  if (failure.kind === 'revision-race') {
    const key = raceKey(err);
    return new ConcurrencyError(key?.streamId ?? 'unknown', 'any', key ? key.position : 'no_stream');
  }
  return new UnavailableError(`append kept failing after ${MAX_ATTEMPTS} attempts: ${(err as Error).message}`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
