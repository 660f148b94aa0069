/**
 * One error type per failure a caller can act on. Each carries a stable `code` that the
 * HTTP edge maps to a status and puts in the `{error: {code, message, details}}` body.
 */
export abstract class KeelError extends Error {
  abstract readonly code: string;
  readonly details: unknown;
  constructor(message: string, details?: unknown) {
    super(message);
    this.name = new.target.name;
    this.details = details;
  }
}

/** Input does not match its schema; `details.field` names the offending field. */
export class ValidationError extends KeelError {
  readonly code = 'VALIDATION_FAILED';
  constructor(
    message: string,
    readonly field?: string,
    details?: unknown,
  ) {
    super(message, details ?? (field ? { field } : undefined));
  }
}

/** The stream is not at the revision the caller expected. */
export class ConcurrencyError extends KeelError {
  readonly code = 'CONCURRENCY_CONFLICT';
  constructor(
    readonly streamId: string,
    readonly expected: string,
    readonly actual: number | 'no_stream',
  ) {
    super(`stream ${streamId} expected revision ${expected} but is at ${actual}`, { streamId, expected, actual });
  }
}

/** The stream was deleted (tombstoned streams can never be written again). */
export class StreamDeletedError extends KeelError {
  readonly code = 'STREAM_DELETED';
  constructor(readonly streamId: string) {
    super(`stream ${streamId} is deleted`, { streamId });
  }
}

/** A stream, tenant or other addressed thing does not exist (or is invisible to the caller). */
export class NotFoundError extends KeelError {
  readonly code = 'NOT_FOUND';
}

/** The store, bus or another dependency cannot be reached; safe to retry. */
export class UnavailableError extends KeelError {
  readonly code = 'UNAVAILABLE';
}
