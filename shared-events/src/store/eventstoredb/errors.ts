import {
  CancelledError,
  DeadlineExceededError,
  MaxAppendSizeExceededError,
  NotLeaderError,
  StreamDeletedError as EsdbStreamDeletedError,
  TimeoutError,
  UnavailableError as EsdbUnavailableError,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import { ConcurrencyError, KeelError, StreamDeletedError, UnavailableError, ValidationError } from '../../errors.ts';
import { toSafeNumber } from './positions.ts';

/**
 * Maps the client's errors to the ones a Keel caller can act on. Anything not listed stays as it
 * is (a bug or a misconfiguration, e.g. access denied, answers 500 rather than a misleading 4xx).
 */
export interface ErrorContext {
  streamId?: string;
  /** The expectedRevision the caller asked for, as the port spells it. */
  expected?: string;
}

/** gRPC status codes that mean "the server could not be reached or did not answer in time". */
const GRPC_UNAVAILABLE = 14;
const GRPC_DEADLINE_EXCEEDED = 4;

export function mapEventStoreDBError(err: unknown, ctx: ErrorContext = {}): unknown {
  if (err instanceof KeelError) return err;
  if (err instanceof WrongExpectedVersionError) {
    const streamId = ctx.streamId || err.streamName || '';
    const actual = err.actualVersion === 'no_stream' ? 'no_stream' : toSafeNumber(err.actualVersion, 'stream revision');
    return new ConcurrencyError(streamId, ctx.expected ?? describeClientExpected(err.expectedVersion), actual);
  }
  if (err instanceof EsdbStreamDeletedError) {
    return new StreamDeletedError(ctx.streamId || err.streamName || '');
  }
  if (err instanceof MaxAppendSizeExceededError) {
    return new ValidationError(
      `the append is larger than EventStoreDB's maximum append size of ${err.maxAppendSize} bytes`,
      'events',
      { maxAppendSize: err.maxAppendSize },
    );
  }
  if (isTransient(err)) {
    // The client's message (gRPC status text) goes to logs through `cause`, not to HTTP callers.
    return Object.assign(new UnavailableError('EventStoreDB is unavailable; retry later'), { cause: err });
  }
  return err;
}

/**
 * Failures worth retrying: the server is down or unreachable, a leader election is under way,
 * a deadline passed, or (TimeoutError = gRPC ABORTED) the server dropped a subscription whose
 * consumer fell behind and asks it to resubscribe.
 */
export function isTransient(err: unknown): boolean {
  if (
    err instanceof EsdbUnavailableError ||
    err instanceof DeadlineExceededError ||
    err instanceof TimeoutError ||
    err instanceof NotLeaderError ||
    err instanceof CancelledError ||
    err instanceof UnavailableError
  ) {
    return true;
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) return true;
    // Cluster discovery gives up with a plain Error.
    if (/Failed to discover after \d+ attempts/.test(err.message)) return true;
  }
  return false;
}

function describeClientExpected(expected: WrongExpectedVersionError['expectedVersion']): string {
  return typeof expected === 'bigint' ? expected.toString() : expected;
}
