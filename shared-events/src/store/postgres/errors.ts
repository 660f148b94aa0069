import { UnavailableError } from '../../errors.ts';

/** What node-pg puts on a server error (and node on a socket error). */
export interface PgError extends Error {
  code?: string;
  constraint?: string;
  detail?: string;
}

/** SQLSTATEs raised by keel_append (migrations/store). */
export const APPEND_CONFLICT = 'KL409';
export const APPEND_STREAM_DELETED = 'KL410';

const EVENT_ID_KEY = 'keel_events_event_id_key';
const STREAM_KEY = 'keel_events_stream_key';

export type AppendFailure =
  /** keel_append found a stream at another revision than expected. */
  | { kind: 'conflict'; streamId: string; expected: number; actual: number }
  | { kind: 'deleted'; streamId: string }
  /** An event id is already stored (an idempotent retry, or a reused id). */
  | { kind: 'duplicate-id' }
  /** Another append took the same stream revision between our check and our insert. */
  | { kind: 'revision-race' }
  /** Serialization failure or deadlock: retrying the whole call is safe. */
  | { kind: 'retry' }
  | { kind: 'unavailable' }
  | { kind: 'other' };

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);

/** True for failures of the connection or the server's availability: safe to retry later. */
export function isUnavailable(err: unknown): boolean {
  const e = err as PgError;
  const code = e?.code ?? '';
  if (CONNECTION_CODES.has(code)) return true;
  // 08: connection exception; 57P01-03: server shutting down / starting; 53300: too many connections
  if (code.startsWith('08') || /^57P0[123]$/.test(code) || code === '53300') return true;
  const msg = e?.message ?? '';
  return !code && /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(msg);
}

export function classifyAppendError(err: unknown): AppendFailure {
  const e = err as PgError;
  switch (e?.code) {
    case APPEND_CONFLICT: {
      const d = JSON.parse(e.detail ?? '{}') as { streamId: string; expected: number; actual: number };
      return { kind: 'conflict', streamId: d.streamId, expected: d.expected, actual: d.actual };
    }
    case APPEND_STREAM_DELETED:
      return { kind: 'deleted', streamId: e.detail ?? '' };
    case '23505':
      if (e.constraint === EVENT_ID_KEY) return { kind: 'duplicate-id' };
      if (e.constraint === STREAM_KEY) return { kind: 'revision-race' };
      return { kind: 'other' };
    case '40001':
    case '40P01':
      return { kind: 'retry' };
    default:
      return isUnavailable(err) ? { kind: 'unavailable' } : { kind: 'other' };
  }
}

/** Failures a caller can act on become KeelErrors; anything else (a bug) is rethrown as is. */
export function mapPgError(err: unknown, what: string): unknown {
  if (isUnavailable(err)) {
    return new UnavailableError(`event store unavailable (${what}): ${(err as Error).message}`, {
      code: (err as PgError).code,
    });
  }
  return err;
}
