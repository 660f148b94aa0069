import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  FORWARDS,
  START,
  StreamDeletedError as EsdbStreamDeletedError,
  StreamNotFoundError,
  WrongExpectedVersionError,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type Position,
  type ResolvedEvent,
  type StreamingRead,
} from '@eventstore/db-client';
import type { Logger } from 'pino';
import type { NewEvent, RecordedEvent } from '../../envelope.ts';
import { parseStreamName } from '../../envelope.ts';
import { ConcurrencyError, KeelError, StreamDeletedError, UnavailableError, ValidationError } from '../../errors.ts';
import type { EventSchemaRegistry } from '../../schemas/registry-port.ts';
import type {
  AppendOptions,
  AppendResult,
  BatchAppendResult,
  EventStore,
  ExpectedRevision,
  ReadAllOptions,
  ReadAllResult,
  ReadStreamOptions,
  StreamAppend,
  StreamMetadata,
  SubscribeOptions,
  Subscription,
  SubscriptionHandler,
} from '../port.ts';
import { fromEsdbEvent, toEventData, type PreparedEvent } from './codec.ts';
import { isTransient, mapEventStoreDBError } from './errors.ts';
import { planAllFilter, toClientFilter, type AllFilterPlan } from './filters.ts';
import {
  describeExpected,
  globalPositionOf,
  readPositionOf,
  toClientDeleteExpectedRevision,
  toClientExpectedRevision,
  toRevision,
  toSafeNumber,
} from './positions.ts';
import { isExpectedRevision, prepareAppends, streamTenant, type PreparedAppend } from './prepare.ts';
import { puller } from './pull.ts';

/**
 * The EventStore port on EventStoreDB (the "distributed" profile), through @eventstore/db-client.
 * It runs the same contract suite as the PostgreSQL store; where EventStoreDB gives weaker
 * guarantees than the port asks for, the difference is stated here and in README-eventstoredb.md:
 *
 * - `appendBatch` is atomic per stream, not across streams: EventStoreDB (up to 24.x) has no
 *   multi-stream transaction. Everything is validated before the first write, so bad input
 *   stores nothing; a failure while writing (conflict, outage) can leave the streams before it
 *   committed. Retrying the same batch is safe because appends are idempotent on eventId.
 * - Idempotency: EventStoreDB dedupes a retried append by event id. With an exact revision or
 *   'no_stream' that is guaranteed; with 'any' or 'stream_exists' the server only remembers
 *   recent event ids (an in-memory cache), so a retry after a server restart can duplicate.
 * - `readAll`/`subscribe` still see events of truncated or deleted streams until a scavenge
 *   removes them; `readStream` never does. A tombstoned stream's revision is not knowable.
 * - Needs EventStoreDB 23.10 or newer (caught-up signal on subscriptions, positions on stream reads).
 */
export interface EventStoreDBEventStoreOptions {
  /** e.g. `esdb://localhost:2113?tls=false`. */
  connectionString: string;
  /** Validates data on append and upcasts old versions on read; without it data is stored as given. */
  registry?: EventSchemaRegistry;
  /** Streams written at once by `appendBatch`. Default 16. */
  batchConcurrency?: number;
  /** Where subscription reconnects are reported. */
  logger?: Logger;
}

/** Marker a subscription puts in its own buffer, in order with the events, when it goes live. */
const CAUGHT_UP = Symbol('caughtUp');
/** ...and when it falls behind and catches up again (EventStoreDB 24.2+ instead of dropping it). */
const FELL_BEHIND = Symbol('fellBehind');
interface CheckpointMark {
  checkpoint: Position;
}
type SubscriptionItem = AllStreamResolvedEvent | typeof CAUGHT_UP | typeof FELL_BEHIND | CheckpointMark;

const DEFAULT_READ_ALL_MAX = 1000;
const DEFAULT_BATCH_SIZE = 500;
/** Transient failures in a row a subscription rides out (about 30 s of backoff) before giving up. */
const MAX_CONSECUTIVE_FAILURES = 10;
/** An expected revision no stream can be at: an append with it fails without writing, reporting the real one. */
const IMPOSSIBLE_REVISION = 2n ** 62n;
/** Upper bound of records scanned backwards for the newest Keel event (system events interleave). */
const HEAD_SCAN_LIMIT = 10_000;
const HEAD_SCAN_PAGE = 100;
/** Record positions remembered as nearby starting points for arbitrary `after` values. */
const RECENT_POSITIONS = 10_000;
/** EventStoreDB's transaction-log chunk size (the server default); every chunk starts with a record. */
const CHUNK_SIZE = 256 * 1024 * 1024;

export function getEventStoreDBEventStore(options: EventStoreDBEventStoreOptions): EventStore {
  if (typeof options?.connectionString !== 'string' || options.connectionString === '') {
    throw new Error('getEventStoreDBEventStore: connectionString is required (e.g. esdb://localhost:2113?tls=false)');
  }
  const client = EventStoreDBClient.connectionString(options.connectionString);
  const registry = options.registry;
  const batchConcurrency = options.batchConcurrency ?? 16;
  const log = options.logger;
  const subscriptions = new Set<Subscription>();
  let closed = false;

  /**
   * Record positions seen lately. EventStoreDB can only start reading $all at a record boundary,
   * while the port lets a caller resume after any number; these are the nearby boundaries to
   * start from when a caller's number is not one (see `startBefore`).
   */
  const recent: number[] = [];
  const recentSet = new Set<number>();
  let recentNext = 0;
  function remember(position: number): void {
    if (recentSet.has(position)) return;
    if (recent.length < RECENT_POSITIONS) {
      recent.push(position);
    } else {
      recentSet.delete(recent[recentNext]!);
      recent[recentNext] = position;
    }
    recentSet.add(position);
    recentNext = (recentNext + 1) % RECENT_POSITIONS;
  }

  const upcast = (e: RecordedEvent): RecordedEvent => (registry ? registry.upcast(e) : e);

  function assertOpen(): void {
    if (closed) throw new Error('the EventStoreDB event store is closed');
  }

  /** Reads a stream's resolved events; [] when it does not exist (or was soft-deleted). */
  async function readRaw(
    streamId: string,
    readOptions: Parameters<EventStoreDBClient['readStream']>[1],
    keep: (e: ResolvedEvent) => 'keep' | 'skip' | 'stop' = () => 'keep',
  ): Promise<ResolvedEvent[]> {
    const out: ResolvedEvent[] = [];
    let read: StreamingRead<ResolvedEvent> | undefined;
    let stoppedEarly = false;
    try {
      read = client.readStream(streamId, readOptions);
      const p = puller<ResolvedEvent>(read);
      for (let e = await p.next(); e !== undefined; e = await p.next()) {
        const verdict = keep(e);
        if (verdict === 'stop') {
          stoppedEarly = true;
          break;
        }
        if (verdict === 'keep') out.push(e);
      }
      return out;
    } catch (err) {
      if (err instanceof StreamNotFoundError) return [];
      throw mapEventStoreDBError(err, { streamId });
    } finally {
      // Stopping early must end the server-side read too, not only our side of it.
      if (read && stoppedEarly) await read.cancel().catch(() => undefined);
    }
  }

  /** Revision of the stream's last event; -1 when it has none. Throws StreamDeletedError when tombstoned. */
  async function lastRevision(streamId: string): Promise<number> {
    const last = await readRaw(streamId, {
      fromRevision: END,
      direction: BACKWARDS,
      maxCount: 1,
      requiresLeader: true,
    });
    const ev = last[0]?.event;
    return ev ? toRevision(ev.revision) : -1;
  }

  /**
   * The revision of a stream whose events reads do not show (soft-deleted, or truncated past its
   * end): an empty append at a revision no stream can be at fails the server's check before
   * anything is written, and the refusal names the stream's real revision.
   */
  async function hiddenRevision(streamId: string): Promise<number> {
    try {
      await client.appendToStream(streamId, [], { expectedRevision: IMPOSSIBLE_REVISION });
    } catch (err) {
      if (err instanceof WrongExpectedVersionError) {
        return err.actualVersion === 'no_stream' ? -1 : toRevision(err.actualVersion);
      }
      const mapped = mapEventStoreDBError(err, { streamId });
      if (mapped instanceof KeelError) throw mapped;
      // Only the revision of a deleted stream is at stake: report it unknown rather than fail.
      log?.warn(
        { err: (err as Error)?.message, streamId },
        'eventstoredb: could not learn the revision of a hidden stream',
      );
      return -1;
    }
    throw new Error(`EventStoreDB accepted an append to ${streamId} at revision ${IMPOSSIBLE_REVISION}`);
  }

  /**
   * The events an append answered for, read back: positions and recordedAt exist only in the
   * store, and after a deduplicated retry these are the events of the first append.
   */
  async function readBack(streamId: string, prepared: PreparedEvent[], last: number): Promise<RecordedEvent[]> {
    const first = last - prepared.length + 1;
    const raw = await readRaw(streamId, {
      fromRevision: BigInt(first),
      maxCount: prepared.length,
      direction: FORWARDS,
      requiresLeader: true,
    });
    const recorded = raw.map((r) => (r.event ? fromEsdbEvent(r.event) : undefined));
    for (const r of recorded) if (r) remember(r.globalPosition);
    const ok =
      recorded.length === prepared.length &&
      recorded.every((r, i) => r !== undefined && r.eventId.toLowerCase() === prepared[i]!.eventId);
    if (!ok) {
      // Only possible when the stream was truncated or deleted between the append and this read.
      throw new Error(
        `append to ${streamId} succeeded but its events (revisions ${first}..${last}) could not be read back; ` +
          'the stream was truncated or deleted meanwhile',
      );
    }
    return recorded as RecordedEvent[];
  }

  async function appendPrepared(a: PreparedAppend): Promise<{ nextExpectedRevision: number; position?: number }> {
    try {
      const r = await client.appendToStream(a.streamId, a.events.map(toEventData), {
        expectedRevision: toClientExpectedRevision(a.expected),
      });
      return {
        nextExpectedRevision: toRevision(r.nextExpectedRevision),
        ...(r.position ? { position: toSafeNumber(r.position.commit, 'commit position') } : {}),
      };
    } catch (err) {
      throw mapEventStoreDBError(err, { streamId: a.streamId, expected: describeExpected(a.expected) });
    }
  }

  /** Position of the newest record of any kind in $all (0 when empty): everything committed is at or below it. */
  async function rawHeadPosition(): Promise<number> {
    const raw = await readAllRaw({ fromPosition: END, direction: BACKWARDS, maxCount: 1 });
    const ev = raw[0]?.event;
    if (!ev) return 0;
    const position = globalPositionOf(ev.position);
    remember(position);
    return position;
  }

  async function readAllRaw(
    readOptions: Parameters<EventStoreDBClient['readAll']>[0],
  ): Promise<AllStreamResolvedEvent[]> {
    try {
      const read = client.readAll(readOptions);
      const out: AllStreamResolvedEvent[] = [];
      const p = puller<AllStreamResolvedEvent>(read);
      for (let e = await p.next(); e !== undefined; e = await p.next()) out.push(e);
      return out;
    } catch (err) {
      throw mapEventStoreDBError(err);
    }
  }

  function toKeelEvent(resolved: AllStreamResolvedEvent): { position: number; event?: RecordedEvent } {
    const ev = resolved.event;
    if (!ev) {
      // Only a link whose target is gone can arrive without an event (links are not resolved here).
      return { position: toSafeNumber(resolved.commitPosition ?? 0n, 'commit position') };
    }
    const position = globalPositionOf(ev.position);
    remember(position);
    const event = fromEsdbEvent(ev, position);
    return event ? { position, event } : { position };
  }

  /**
   * An event position at or before `after` (0 = the very start) to read or subscribe from, so
   * that everything after `after` is reached once the reader drops what is at or before it.
   * Positions this store hands out are event positions and are used as they are. Any other
   * number (a reader's arithmetic, another store's position) would make EventStoreDB fail or
   * (for a subscription, which starts after the first event at or past its position) skip an
   * event; it is mapped to the newest event at or before it, searched from a recently seen
   * event, else from the start of its 256 MiB transaction-log chunk, else from the start.
   */
  async function startBefore(after: number): Promise<number> {
    if (after === 0 || recentSet.has(after)) return after;
    try {
      const at = await readAllRaw({ fromPosition: readPositionOf(after), direction: FORWARDS, maxCount: 1 });
      const first = at[0]?.event?.position;
      if (first === undefined) return Math.min(after, await rawHeadPosition()); // past the end
      if (first.commit === BigInt(after)) return after;
    } catch (err) {
      if (err instanceof KeelError || isTransient(err)) throw err;
      // The server cannot read at `after`: it is not a record boundary.
    }
    let near = 0;
    for (const p of recent) if (p <= after && p > near) near = p;
    const chunkStart = Math.floor(after / CHUNK_SIZE) * CHUNK_SIZE;
    for (const start of [near, chunkStart]) {
      if (start <= 0) continue;
      try {
        const found = await lastEventAtOrBefore(start, after);
        if (found !== undefined) return found;
      } catch (err) {
        if (err instanceof KeelError || isTransient(err)) throw err;
      }
    }
    return (await lastEventAtOrBefore(0, after)) ?? 0;
  }

  /** Scans forward from the record boundary `start` (0 = the start) for the newest event at or before `limit`. */
  async function lastEventAtOrBefore(start: number, limit: number): Promise<number | undefined> {
    let last: number | undefined;
    let from = start;
    for (;;) {
      const raw = await readAllRaw({ fromPosition: readPositionOf(from), direction: FORWARDS, maxCount: 4096 });
      let progressed = false;
      for (const r of raw) {
        const p = globalPositionOf(r.event?.position);
        if (p > limit) return last;
        if (last === undefined || p > last) {
          last = p;
          progressed = true;
        }
      }
      if (raw.length < 4096 || !progressed || last === undefined) return last;
      from = last;
    }
  }

  /**
   * Unfiltered page of $all: a plain read, Keel events kept, system events stepped over. A read
   * includes its start, so what is at or before `after` is dropped. EventStoreDB's $all is
   * gap-free by construction: one writer appends to the log and readers see it only up to the
   * last indexed commit, so a later commit always has a higher position.
   */
  async function readAllUnfiltered(after: number, maxCount: number, plan: AllFilterPlan): Promise<ReadAllResult> {
    const events: RecordedEvent[] = [];
    let position = after;
    // A read can start at any record boundary, and positions handed out are such; only when the
    // server refuses `after` is it mapped to one.
    let readFrom = after;
    const read = async (want: number): Promise<AllStreamResolvedEvent[]> => {
      try {
        return await readAllRaw({ fromPosition: readPositionOf(readFrom), direction: FORWARDS, maxCount: want });
      } catch (err) {
        if (readFrom !== after || err instanceof KeelError || isTransient(err)) throw err;
        readFrom = await startBefore(after);
        return readAllRaw({ fromPosition: readPositionOf(readFrom), direction: FORWARDS, maxCount: want });
      }
    };
    let scanned = 0;
    // System events (projection links, metadata, stats) interleave with ours: keep reading until
    // the page is full or the log ends, but bound the records scanned so one call stays short.
    const scanBudget = Math.max(maxCount * 10, 1000);
    for (;;) {
      const want = Math.min(maxCount - events.length, 4096) + 1;
      const raw = await read(want);
      for (const r of raw) {
        const k = toKeelEvent(r);
        readFrom = Math.max(readFrom, k.position);
        if (k.position <= position) continue;
        scanned++;
        position = k.position;
        if (k.event && plan.accepts(k.event)) events.push(upcast(k.event));
        if (events.length >= maxCount) break;
      }
      if (events.length >= maxCount) return { events, position, isEnd: false };
      if (raw.length < want) return { events, position, isEnd: true };
      if (scanned >= scanBudget) return { events, position, isEnd: false };
    }
  }

  function openSubscription(fromPosition: number, plan: AllFilterPlan, highWaterMark: number): AllStreamSubscription {
    const sub = client.subscribeToAll(
      {
        fromPosition: readPositionOf(fromPosition),
        resolveLinkTos: false,
        filter: toClientFilter(plan.server, {
          // Called inside the subscription's transform, so pushing here keeps the order with events.
          checkpointReached: (s, checkpoint) => {
            s.push({ checkpoint } satisfies CheckpointMark);
          },
        }),
      },
      { highWaterMark },
    );
    // 'caughtUp' is emitted from the same transform step that reads the server's message, so the
    // marker lands in the buffer exactly between the last catch-up event and the first live one.
    sub.on('caughtUp', () => sub.push(CAUGHT_UP));
    sub.on('fellBehind', () => sub.push(FELL_BEHIND));
    return sub;
  }

  async function closeSubscription(sub: AllStreamSubscription): Promise<void> {
    await sub.unsubscribe().catch(() => undefined);
    sub.destroy();
  }

  /**
   * Filtered page of $all, filtered by the server: the 6.x client filters only subscriptions,
   * not reads, so a page is a catch-up subscription that stops when the page is full or it has
   * caught up with the head observed before it started.
   */
  async function readAllFiltered(after: number, maxCount: number, plan: AllFilterPlan): Promise<ReadAllResult> {
    const head = await rawHeadPosition();
    if (head <= after) return { events: [], position: after, isEnd: true };
    // A subscription starts after its position: from the record at or before `after`.
    const from = await startBefore(after);
    const sub = openSubscription(from, plan, Math.min(maxCount, 512));
    const p = puller<SubscriptionItem>(sub);
    const events: RecordedEvent[] = [];
    let position = after;
    try {
      for (;;) {
        const item = await p.next();
        if (item === undefined) throw new UnavailableError('EventStoreDB ended a $all read before it caught up');
        if (item === CAUGHT_UP) return { events, position: Math.max(position, head), isEnd: true };
        if (item === FELL_BEHIND) continue;
        if ('checkpoint' in item) {
          // The server has looked at everything up to the checkpoint; past the head means done.
          if (toSafeNumber(item.checkpoint.commit, 'checkpoint') >= head) {
            return { events, position: Math.max(position, head), isEnd: true };
          }
          continue;
        }
        const k = toKeelEvent(item);
        if (k.position <= after) continue;
        if (k.position > head) return { events, position: Math.max(position, head), isEnd: true };
        position = k.position;
        if (k.event && plan.accepts(k.event)) events.push(upcast(k.event));
        if (position === head) return { events, position, isEnd: true };
        if (events.length >= maxCount) return { events, position, isEnd: false };
      }
    } catch (err) {
      throw mapEventStoreDBError(err);
    } finally {
      await closeSubscription(sub);
    }
  }

  const store: EventStore = {
    async appendToStream(
      streamId: string,
      events: NewEvent[],
      appendOptions: AppendOptions = {},
    ): Promise<AppendResult> {
      assertOpen();
      const [a] = prepareAppends([{ streamId, events, expectedRevision: appendOptions?.expectedRevision }], registry);
      if (a!.events.length === 0) {
        // Nothing to write; EventStoreDB would still touch the stream (and undelete a soft-deleted one).
        const current = await lastRevision(streamId);
        checkExpectation(streamId, a!.expected, current);
        return { nextExpectedRevision: current, globalPosition: 0, events: [] };
      }
      const { nextExpectedRevision } = await appendPrepared(a!);
      const recorded = await readBack(streamId, a!.events, nextExpectedRevision);
      return { nextExpectedRevision, globalPosition: recorded[recorded.length - 1]!.globalPosition, events: recorded };
    },

    async appendBatch(appends: StreamAppend[]): Promise<BatchAppendResult> {
      assertOpen();
      // Everything is validated before the first write: bad input anywhere stores nothing.
      const work = prepareAppends(appends, registry);
      if (work.length === 0) return { globalPosition: 0, streams: [], appended: 0 };

      // New events land above this head; the events of a deduplicated retry are at or below it.
      const headBefore = await rawHeadPosition();
      const results: number[] = new Array(work.length);
      let appended = 0;
      let globalPosition = 0;

      const appendOne = async (w: PreparedAppend): Promise<void> => {
        if (w.events.length === 0) {
          const current = await lastRevision(w.streamId);
          checkExpectation(w.streamId, w.expected, current);
          results[w.index] = current;
          return;
        }
        const r = await appendPrepared(w);
        results[w.index] = r.nextExpectedRevision;
        // The batch's position and "how many were new" come from the store, not from the
        // append's answer: a deduplicated retry answers for events older than `headBefore`.
        const [last] = await readBack(w.streamId, w.events.slice(-1), r.nextExpectedRevision);
        globalPosition = Math.max(globalPosition, last!.globalPosition);
        if (last!.globalPosition > headBefore) appended += w.events.length;
      };

      // One stream's parts keep their input order; different streams go in parallel.
      const byStream = new Map<string, PreparedAppend[]>();
      for (const w of work) {
        const list = byStream.get(w.streamId);
        if (list) list.push(w);
        else byStream.set(w.streamId, [w]);
      }
      const queue = [...byStream.values()];
      let failure: { err: unknown } | undefined;
      const worker = async (): Promise<void> => {
        for (let group = queue.shift(); group && !failure; group = queue.shift()) {
          for (const w of group) {
            if (failure) return;
            try {
              await appendOne(w);
            } catch (err) {
              failure ??= { err };
              return;
            }
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(batchConcurrency, queue.length) }, worker));
      if (failure) throw failure.err;
      return {
        globalPosition,
        streams: work.map((w) => ({ streamId: w.streamId, nextExpectedRevision: results[w.index]! })),
        appended,
      };
    },

    async readStream(streamId: string, readOptions: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
      assertOpen();
      validateReadStreamId(streamId);
      const from = optionalWhole(readOptions.fromRevision, 'fromRevision') ?? 0;
      const to = optionalWhole(readOptions.toRevision, 'toRevision');
      const maxCount = optionalWhole(readOptions.maxCount, 'maxCount') ?? Number.MAX_SAFE_INTEGER;
      const upTo = readOptions.upTo;
      if (upTo !== undefined && (!(upTo instanceof Date) || Number.isNaN(upTo.getTime()))) {
        throw new ValidationError('upTo must be a valid Date', 'upTo');
      }
      const direction = readOptions.direction ?? 'forwards';
      if (direction !== 'forwards' && direction !== 'backwards') {
        throw new ValidationError("direction must be 'forwards' or 'backwards'", 'direction');
      }
      if ((to !== undefined && to < from) || maxCount === 0) return [];

      // The server counts every event it returns; events dropped here (recorded after `upTo`, or
      // not Keel's) are made up for by reading on from where the last page ended.
      const forwards = direction === 'forwards';
      const out: RecordedEvent[] = [];
      let cursor: bigint | typeof START | typeof END = forwards
        ? from === 0
          ? START
          : BigInt(from)
        : to === undefined
          ? END
          : BigInt(to);
      let span = to !== undefined ? to - from + 1 : Number.MAX_SAFE_INTEGER;
      for (;;) {
        const want = upTo ? span : Math.min(span, maxCount - out.length);
        let got = 0;
        let last = -1;
        let done = false;
        await readRaw(
          streamId,
          { fromRevision: cursor, direction: forwards ? FORWARDS : BACKWARDS, maxCount: want },
          (r) => {
            got++;
            const ev = r.event;
            if (!ev) return 'skip';
            last = toRevision(ev.revision);
            if (forwards ? to !== undefined && last > to : last < from) {
              done = true;
              return 'stop';
            }
            const e = fromEsdbEvent(ev);
            if (!e || (upTo && e.recordedAt.getTime() > upTo.getTime())) return 'skip';
            out.push(upcast(e));
            if (out.length >= maxCount) done = true;
            return done ? 'stop' : 'skip';
          },
        );
        if (done || got < want || last < 0) return out;
        if (!forwards && last === 0) return out;
        if (span !== Number.MAX_SAFE_INTEGER) span -= got;
        if (span <= 0) return out;
        cursor = BigInt(forwards ? last + 1 : last - 1);
      }
    },

    async readAll(readOptions: ReadAllOptions = {}): Promise<ReadAllResult> {
      assertOpen();
      const after = optionalWhole(readOptions.after, 'after') ?? 0;
      const maxCount = optionalWhole(readOptions.maxCount, 'maxCount') ?? DEFAULT_READ_ALL_MAX;
      if (maxCount < 1) throw new ValidationError('maxCount must be at least 1', 'maxCount');
      const plan = planAllFilter(readOptions.filter);
      return plan.server ? readAllFiltered(after, maxCount, plan) : readAllUnfiltered(after, maxCount, plan);
    },

    subscribe(subscribeOptions: SubscribeOptions, handler: SubscriptionHandler): Subscription {
      assertOpen();
      const opts = subscribeOptions ?? {};
      const plan = planAllFilter(opts.filter);
      let position = optionalWhole(opts.after, 'after') ?? 0;
      const batchSize = optionalWhole(opts.batchSize, 'batchSize') ?? DEFAULT_BATCH_SIZE;
      if (batchSize < 1) throw new ValidationError('batchSize must be a whole number >= 1', 'batchSize');
      // The server pushes events, so there is nothing to poll; the option is checked like the PostgreSQL store does.
      if (opts.pollIntervalMs !== undefined && !(opts.pollIntervalMs > 0)) {
        throw new ValidationError('pollIntervalMs must be > 0', 'pollIntervalMs');
      }
      if (typeof handler !== 'function') throw new ValidationError('handler must be a function', 'handler');

      let stopping = false;
      let current: AllStreamSubscription | undefined;
      let wakeBackoff: (() => void) | undefined;

      class HandlerFailed {
        constructor(readonly err: unknown) {}
      }

      /** One server subscription from `position`; returns when stopped, throws when it breaks. */
      const runOnce = async (): Promise<void> => {
        const sub = openSubscription(await startBefore(position), plan, batchSize);
        if (stopping) {
          await closeSubscription(sub);
          return;
        }
        current = sub;
        const p = puller<SubscriptionItem>(sub);
        let batch: RecordedEvent[] = [];
        let batchPosition = position;
        let isLive = false;
        const flush = async (): Promise<void> => {
          const events = batch;
          batch = [];
          try {
            await handler(events, { position: batchPosition, isLive });
          } catch (err) {
            throw new HandlerFailed(err);
          }
          position = batchPosition;
        };
        try {
          for (;;) {
            if (stopping) return;
            const item = await p.next();
            if (item === undefined) {
              if (stopping) return;
              throw new UnavailableError('EventStoreDB closed the subscription');
            }
            if (item === CAUGHT_UP) {
              // Like the PostgreSQL store: what was read while catching up is not live yet.
              if (batch.length > 0) await flush();
              isLive = true;
              continue;
            }
            if (item === FELL_BEHIND) {
              if (batch.length > 0) await flush();
              isLive = false;
              continue;
            }
            if ('checkpoint' in item) {
              // Progress through filtered-out events: nothing to hand over, but a resubscribe may
              // start there (only when no delivered-but-unhandled events are pending).
              const c = toSafeNumber(item.checkpoint.commit, 'checkpoint');
              if (batch.length === 0 && c > position) position = batchPosition = c;
            } else {
              const k = toKeelEvent(item);
              if (k.position > batchPosition) {
                batchPosition = k.position;
                if (k.event && plan.accepts(k.event)) batch.push(upcast(k.event));
                else if (batch.length === 0) position = batchPosition;
              }
            }
            // Hand over a full batch, or whatever is there once nothing more is waiting.
            if (batch.length >= batchSize || (batch.length > 0 && p.buffered === 0)) await flush();
          }
        } finally {
          current = undefined;
          await closeSubscription(sub);
        }
      };

      const done = (async () => {
        let failures = 0;
        while (!stopping) {
          const startedAt = position;
          try {
            await runOnce();
            return;
          } catch (err) {
            if (err instanceof HandlerFailed) throw err.err;
            if (stopping) return;
            const mapped = mapEventStoreDBError(err);
            if (!isTransient(mapped)) throw mapped;
            // An outage or the server dropping a slow consumer: resubscribe from the last
            // handled position, and give up only when no progress is made for a while.
            failures = position > startedAt ? 1 : failures + 1;
            if (failures > MAX_CONSECUTIVE_FAILURES) throw mapped;
            const delay = Math.min(5000, 100 * 2 ** failures) * (0.5 + Math.random() / 2);
            log?.warn(
              { err: (err as Error).message, failures, position },
              'eventstoredb subscription interrupted; resubscribing',
            );
            await new Promise<void>((resolve) => {
              wakeBackoff = resolve;
              setTimeout(resolve, delay).unref();
            });
            wakeBackoff = undefined;
          }
        }
      })();
      // Failures reach the caller through `done`; this keeps an unobserved one from becoming an
      // unhandled rejection, and logs it.
      done.catch((err: unknown) => log?.error({ err: (err as Error)?.message }, 'eventstoredb subscription failed'));

      const subscription: Subscription = {
        done,
        async stop() {
          stopping = true;
          wakeBackoff?.();
          // The loop notices `stopping` after the batch in flight; closing the server stream
          // ends a wait for the next event.
          if (current) await closeSubscription(current);
          await done.catch(() => undefined);
        },
      };
      subscriptions.add(subscription);
      void done.catch(() => undefined).finally(() => subscriptions.delete(subscription));
      return subscription;
    },

    async truncateBefore(streamId: string, revision: number): Promise<void> {
      assertOpen();
      streamTenant(streamId);
      if (!Number.isSafeInteger(revision) || revision < 0) {
        throw new ValidationError('revision must be a whole number >= 0', 'revision');
      }
      const meta = await store.getStreamMetadata(streamId);
      if (meta.deleted === 'tombstone') throw new StreamDeletedError(streamId);
      // Writing the metadata of a soft-deleted stream would undelete it in EventStoreDB; it reads
      // as empty already, and a later append starts past the old events anyway.
      if (meta.deleted === 'soft') return;
      // Never backwards, like the PostgreSQL store.
      if ((meta.truncateBefore ?? 0) >= revision) return;
      try {
        // $tb lives in the stream metadata with whatever else is there (ACLs): keep the rest.
        const existing = await client.getStreamMetadata(streamId);
        await client.setStreamMetadata(streamId, { ...(existing.metadata ?? {}), truncateBefore: revision });
      } catch (err) {
        throw mapEventStoreDBError(err, { streamId });
      }
    },

    async deleteStream(
      streamId: string,
      deleteOptions: { hard?: boolean; expectedRevision?: ExpectedRevision } = {},
    ): Promise<void> {
      assertOpen();
      streamTenant(streamId);
      let expected = deleteOptions?.expectedRevision ?? 'any';
      if (!isExpectedRevision(expected)) {
        throw new ValidationError(
          "expectedRevision must be 'any', 'no_stream', 'stream_exists' or a revision >= 0",
          'expectedRevision',
        );
      }
      if (expected === 'stream_exists') {
        // EventStoreDB's delete knows no 'stream_exists': check it here, then delete at that revision.
        const current = await lastRevision(streamId);
        checkExpectation(streamId, expected, current);
        expected = current;
      }
      try {
        const clientExpected = toClientDeleteExpectedRevision(expected);
        if (deleteOptions?.hard) await client.tombstoneStream(streamId, { expectedRevision: clientExpected });
        else await client.deleteStream(streamId, { expectedRevision: clientExpected });
      } catch (err) {
        throw mapEventStoreDBError(err, { streamId, expected: describeExpected(deleteOptions?.expectedRevision) });
      }
    },

    async getStreamMetadata(streamId: string): Promise<StreamMetadata> {
      assertOpen();
      validateReadStreamId(streamId);
      const tenantId = parseStreamName(streamId)?.tenantId;
      const base = { streamId, ...(tenantId !== undefined ? { tenantId } : {}) };
      // A tombstoned stream answers nothing but "deleted", not even its last revision.
      const tombstone: StreamMetadata = { ...base, revision: -1, deleted: 'tombstone' };
      let revision: number;
      try {
        revision = await lastRevision(streamId);
      } catch (err) {
        if (err instanceof StreamDeletedError) return tombstone;
        throw err;
      }
      let tb: unknown;
      try {
        tb = (await client.getStreamMetadata(streamId)).metadata?.truncateBefore;
      } catch (err) {
        if (err instanceof EsdbStreamDeletedError) return tombstone;
        throw mapEventStoreDBError(err, { streamId });
      }
      const truncateBefore = typeof tb === 'number' && tb > 0 ? tb : undefined;
      // Soft-deleted or truncated past its end, a stream reads as empty; the server still knows
      // its revision.
      if (revision === -1 && truncateBefore !== undefined) revision = await hiddenRevision(streamId);
      // A soft delete sets $tb to Int64.MaxValue (a number past 2^53 here). Reported like the
      // PostgreSQL store: reads start after the last event.
      if (truncateBefore !== undefined && truncateBefore >= Number.MAX_SAFE_INTEGER) {
        return { ...base, revision, truncateBefore: revision + 1, deleted: 'soft' };
      }
      return { ...base, revision, ...(truncateBefore !== undefined ? { truncateBefore } : {}), deleted: 'no' };
    },

    async headPosition(): Promise<number> {
      assertOpen();
      // The newest Keel event: with projections running, EventStoreDB writes link and checkpoint
      // events after ours, and a head that names one of those would never be "caught up" to.
      let from: Position | typeof END = END;
      let scanned = 0;
      while (scanned < HEAD_SCAN_LIMIT) {
        const raw = await readAllRaw({ fromPosition: from, direction: BACKWARDS, maxCount: HEAD_SCAN_PAGE });
        for (const r of raw) {
          const k = toKeelEvent(r);
          if (k.event) return k.position;
        }
        scanned += raw.length;
        const oldest = raw[raw.length - 1]?.event?.position;
        if (raw.length < HEAD_SCAN_PAGE || !oldest) return 0;
        // Backward reads start at (and exclude) a position; the oldest record seen is the next start.
        from = oldest;
      }
      // No Keel event among the newest records: everything above is someone else's, so the raw
      // head is still a safe "read after here" point.
      return rawHeadPosition();
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await Promise.allSettled([...subscriptions].map((s) => s.stop()));
      await client.dispose();
    },
  };
  return store;
}

/** What the port's expectation means for a stream at `current` (-1 = no events), for the paths that do not write. */
function checkExpectation(streamId: string, expected: ExpectedRevision | undefined, current: number): void {
  const ok =
    expected === undefined ||
    expected === 'any' ||
    (expected === 'no_stream' && current === -1) ||
    (expected === 'stream_exists' && current >= 0) ||
    (typeof expected === 'number' && expected === current);
  if (!ok) throw new ConcurrencyError(streamId, describeExpected(expected), current === -1 ? 'no_stream' : current);
}

function validateReadStreamId(streamId: unknown): asserts streamId is string {
  if (typeof streamId !== 'string' || streamId === '')
    throw new ValidationError('streamId must be a non-empty string', 'streamId');
  if (streamId.startsWith('$')) throw new ValidationError('streamId must not start with "$"', 'streamId');
}

function optionalWhole(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ValidationError(`${field} must be a whole number >= 0`, field);
  }
  return value;
}
