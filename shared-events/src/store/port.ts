import type { NewEvent, RecordedEvent } from '../envelope.ts';

/**
 * The event-store port. Adapters: PostgreSQL (store/postgres) and EventStoreDB (store/eventstoredb).
 * Both pass the same contract suite (shared-events/test/store-contract.ts).
 *
 * Guarantees:
 * - an append is atomic per call, and `appendBatch` is atomic over all of its streams;
 * - optimistic concurrency per stream through `expectedRevision`;
 * - idempotent on eventId: appending events whose ids are all already stored in that stream
 *   stores nothing and answers as the first append did;
 * - `readAll` and `subscribe` are gap-safe: a reader never skips an event that commits later
 *   with a lower global position than one it has already seen.
 */
export type ExpectedRevision = 'any' | 'no_stream' | 'stream_exists' | number;

export interface AppendOptions {
  /** Default 'any'. A number is the revision of the stream's last event. */
  expectedRevision?: ExpectedRevision;
}

export interface AppendResult {
  /** Revision of the stream's last event after the append. */
  nextExpectedRevision: number;
  /** Global position of the last appended event. */
  globalPosition: number;
  /** The recorded events (ids, positions, recordedAt filled in). */
  events: RecordedEvent[];
}

export interface StreamAppend {
  streamId: string;
  events: NewEvent[];
  expectedRevision?: ExpectedRevision;
}

export interface BatchAppendResult {
  /** Global position of the last event of the batch (0 when nothing was appended). */
  globalPosition: number;
  /** Per stream, in input order. */
  streams: { streamId: string; nextExpectedRevision: number }[];
  /** Number of events newly stored (duplicates by eventId not counted). */
  appended: number;
}

export interface ReadStreamOptions {
  /*
   * fromRevision/toRevision are the lower/upper bounds of the range in either direction:
   * 'backwards' returns the same range newest first, and maxCount then counts from the newest
   * (`{direction: 'backwards', maxCount: 1}` is the last event).
   */
  /** Inclusive, default 0. */
  fromRevision?: number;
  /** Inclusive. */
  toRevision?: number;
  /** Only events recorded at or before this time. */
  upTo?: Date;
  maxCount?: number;
  /** Default 'forwards'. */
  direction?: 'forwards' | 'backwards';
}

/** All given conditions must hold; an empty list matches nothing. */
export interface AllFilter {
  tenantId?: string;
  eventTypes?: string[];
  /** Stream categories, e.g. ['record', 'run']. */
  categories?: string[];
}

export interface ReadAllOptions {
  /** Exclusive: events with a global position strictly greater are returned. Default 0 (from the start). */
  after?: number;
  /** Default 1000. */
  maxCount?: number;
  filter?: AllFilter;
}

export interface ReadAllResult {
  events: RecordedEvent[];
  /**
   * Resume point: pass as `after` to continue. May be past the last returned event when a
   * filter skipped events. Never beyond what is safe to have read (gap-safe).
   */
  position: number;
  /** True when the reader has caught up with everything committed and visible. */
  isEnd: boolean;
}

export interface SubscribeOptions {
  /** Exclusive checkpoint to resume after. Default 0. */
  after?: number;
  filter?: AllFilter;
  batchSize?: number;
  /** Polling interval when caught up, for adapters that poll. Default 50 ms. */
  pollIntervalMs?: number;
}

export interface Subscription {
  /** Stops after the batch in flight; resolves when stopped. */
  stop(): Promise<void>;
  /** Resolves when the subscription ends: rejects when the handler or the store failed. */
  readonly done: Promise<void>;
}

/**
 * `position`: the checkpoint to resume after (may be past the last event when a filter skipped
 * events). `isLive`: the subscription had caught up with the log before this batch was read.
 */
export type SubscriptionHandler = (
  events: RecordedEvent[],
  ctx: { position: number; isLive: boolean },
) => Promise<void>;

export interface StreamMetadata {
  streamId: string;
  tenantId?: string;
  /** Revision of the last event, or -1 when the stream has no events. */
  revision: number;
  truncateBefore?: number;
  deleted: 'no' | 'soft' | 'tombstone';
}

export interface EventStore {
  /** Which adapter this is, for code that opens a second connection to the same store (ingest threads). */
  readonly kind?: 'postgresql' | 'eventstoredb';
  appendToStream(streamId: string, events: NewEvent[], options?: AppendOptions): Promise<AppendResult>;
  /** Many streams in one transaction (ingestion); all or nothing. */
  appendBatch(appends: StreamAppend[]): Promise<BatchAppendResult>;
  /** Events of one stream, in order; [] for a stream that does not exist. Throws StreamDeletedError for a tombstoned one. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  readAll(options?: ReadAllOptions): Promise<ReadAllResult>;
  /** Catch-up from `after`, then live. */
  subscribe(options: SubscribeOptions, handler: SubscriptionHandler): Subscription;
  /** Events before `revision` are no longer read (and may be archived/scavenged). */
  truncateBefore(streamId: string, revision: number): Promise<void>;
  /**
   * Soft delete: the stream reads as empty; appending again continues its revisions.
   * Tombstone (`hard: true`): the stream can never be read or written again (StreamDeletedError).
   */
  deleteStream(streamId: string, options?: { hard?: boolean; expectedRevision?: ExpectedRevision }): Promise<void>;
  getStreamMetadata(streamId: string): Promise<StreamMetadata>;
  /** Highest global position visible to readers (gap-safe). */
  headPosition(): Promise<number>;
  close(): Promise<void>;
}
