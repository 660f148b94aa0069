import { KeelError } from '../errors.ts';

/**
 * The bytes carry a schema fingerprint this process does not know: usually a newer writer
 * (deploy the newer contract before consuming), so a consumer should stop rather than skip.
 */
export class UnknownSchemaError extends KeelError {
  readonly code = 'UNKNOWN_SCHEMA';
  constructor(readonly fingerprint: string) {
    super(`no event schema has fingerprint ${fingerprint} (written by a newer contract, or not a Keel event)`, {
      fingerprint,
    });
  }
}

/** The bytes are not a decodable Keel event (no single-object marker, truncated, corrupt): a poison message. */
export class MalformedEventError extends KeelError {
  readonly code = 'MALFORMED_EVENT';
}
