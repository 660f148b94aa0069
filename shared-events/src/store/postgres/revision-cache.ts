/**
 * The last revision this store instance wrote to each stream, handed to keel_append as a hint so
 * it can skip that stream's index probe (the probe was ~30% of the server's work per event in a
 * 1,000-stream batch: `npm run bench -- store`).
 *
 * Why a hint is safe: a stream's revision (its highest stream_position) never goes down (no
 * operation deletes events), and a hint is only ever a revision this instance saw committed. So a
 * hint is the current revision or lower. Lower means another writer appended since: the insert at
 * hint + 1 then hits the unique (stream_id, stream_position) index, the call fails as a whole and
 * is retried without hints. Tombstones and soft deletes are still read from keel_streams on every
 * call, and hints are only sent where they cannot change a verdict ('any', or an exact expected
 * revision equal to the hint: see `hintFor`).
 *
 * Another writer on the same streams (another process, another ingest thread) makes hints go
 * stale; each stale hint costs one failed call. After one, hints rest for `restCalls` calls, during
 * which revisions are still learned from the probes: the overhead stays near one failed call in
 * `restCalls` even when writers keep crossing.
 *
 * Two generations, not an exact LRU: writes go to `young`; when it holds half the capacity it
 * becomes `old` and the previous `old` is dropped. Every operation is O(1); the cache holds at
 * most `capacity` streams and always the last capacity / 2 written. (A Map used as an LRU, whose
 * oldest key is deleted on each write, degrades: V8 leaves deleted entries in place until the
 * table is rebuilt, and each `keys().next()` walks past them. Under HTTP ingest, where every
 * record is a new stream and the cache is full after 20 calls, that was ~30 µs per write, a
 * third of an ingest thread's CPU.)
 */
export class RevisionCache {
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly half: number;
  private calls = 0;
  private restUntil = 0;
  /** Calls sent with hints, and how many of those failed on a stale one. */
  readonly stats = { hintedCalls: 0, staleCalls: 0 };

  constructor(
    private readonly capacity: number,
    private readonly restCalls = 100,
  ) {
    this.half = Math.max(1, Math.ceil(capacity / 2));
  }

  /** Counts a call; false while hints rest after a stale one, or when the cache is off. */
  beginCall(): boolean {
    this.calls++;
    return this.capacity > 0 && this.calls >= this.restUntil;
  }

  /**
   * The hint for a stream appended with `expected`, or -1 for none (probe). 'no_stream' and
   * 'stream_exists' depend on soft deletes judged against the true revision, and an exact
   * expected revision other than the hint would turn a stale hint into a false conflict.
   */
  hintFor(streamId: string, expected: number | string): number {
    const known = this.young.get(streamId) ?? this.old.get(streamId);
    if (known === undefined) return -1;
    return expected === 'any' || expected === known ? known : -1;
  }

  /** Hints for a call's streams (counted in `stats`), or undefined when none is known. */
  hintsFor(streams: readonly { streamId: string; expected: number | string }[]): number[] | undefined {
    const hints = streams.map((s) => this.hintFor(s.streamId, s.expected));
    if (!hints.some((h) => h >= 0)) return undefined;
    this.stats.hintedCalls++;
    return hints;
  }

  /** A committed revision (revisions only grow, so the young generation's is the newer one). */
  set(streamId: string, revision: number): void {
    if (this.capacity <= 0) return;
    this.young.set(streamId, revision);
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
  }

  /** Forget streams whose outcome is unknown. */
  forget(streamIds: Iterable<string>): void {
    for (const id of streamIds) {
      this.young.delete(id);
      this.old.delete(id);
    }
  }

  /** A call hinting these streams failed on a hint: forget them; hints rest for `restCalls` calls. */
  stale(streamIds: Iterable<string>): void {
    this.forget(streamIds);
    this.stats.staleCalls++;
    this.restUntil = this.calls + this.restCalls;
  }

  /** Entries held (a stream written in both generations counts twice); at most `capacity`. */
  get size(): number {
    return this.young.size + this.old.size;
  }
}
