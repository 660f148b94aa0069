import {
  ANY,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  type AppendExpectedRevision,
  type Position,
} from '@eventstore/db-client';
import { ValidationError } from '../../errors.ts';
import type { ExpectedRevision } from '../port.ts';

/**
 * Conversions between the port's plain numbers and the client's bigints.
 *
 * Global position: EventStoreDB gives every event a (commit, prepare) pair of byte offsets into
 * its transaction log. Events written through gRPC are "self-committed" prepares, so commit ==
 * prepare == the event's own log offset and the commit position alone is a strictly increasing,
 * unique key in $all order. The port carries it as a JS number: exact up to 2^53 bytes (8 PiB)
 * of transaction log, far beyond any single EventStoreDB node. Beyond that we refuse rather than
 * silently round.
 */

/** What EventStoreDB answers instead of a position where it has none (e.g. old servers reading a stream). */
const NO_POSITION = 0xffffffffffffffffn;

export function toSafeNumber(value: bigint, what: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`${what} ${value} is outside the exact range of a JS number (0..2^53-1)`);
  }
  return Number(value);
}

/** The global position of an event: its commit position. */
export function globalPositionOf(position: Position | undefined, what = 'commit position'): number {
  if (!position || position.commit === NO_POSITION || position.commit < 0n) {
    // Servers before 22.6 do not return positions when reading a stream; Keel needs them.
    throw new Error(`EventStoreDB returned no ${what}: Keel needs EventStoreDB 23.10 or newer`);
  }
  return toSafeNumber(position.commit, what);
}

/** A global position from the port as a read/subscribe start point. `0` is the start of $all. */
export function readPositionOf(globalPosition: number): typeof START | Position {
  if (globalPosition === 0) return START;
  const p = BigInt(globalPosition);
  // Self-committed events have commit == prepare, so (p, p) names exactly the event at p.
  return { commit: p, prepare: p };
}

export function toRevision(revision: bigint): number {
  return toSafeNumber(revision, 'stream revision');
}

export function toClientExpectedRevision(expected: ExpectedRevision | undefined): AppendExpectedRevision {
  switch (expected) {
    case undefined:
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      if (!Number.isSafeInteger(expected) || expected < 0) {
        throw new ValidationError(
          "expectedRevision must be 'any', 'no_stream', 'stream_exists' or a revision >= 0",
          'expectedRevision',
        );
      }
      return BigInt(expected);
  }
}

/** deleteStream/tombstoneStream know no 'stream_exists' (the store checks that one itself). */
export function toClientDeleteExpectedRevision(
  expected: Exclude<ExpectedRevision, 'stream_exists'> | undefined,
): typeof ANY | typeof NO_STREAM | bigint {
  return toClientExpectedRevision(expected) as typeof ANY | typeof NO_STREAM | bigint;
}

export function describeExpected(expected: ExpectedRevision | undefined): string {
  return String(expected ?? 'any');
}
