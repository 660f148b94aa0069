import { KeelError, type Event } from '@keel/shared-events';

/**
 * The unit of business logic: `decide(command, state) → events`, `evolve(state, event) → state`,
 * `initialState()`. Pure: no clock, no randomness, no I/O. Ids, secrets (already hashed or
 * encrypted) and timestamps arrive inside the command.
 */
export type Command<Type extends string = string, Data extends Record<string, unknown> = Record<string, unknown>> = {
  readonly type: Type;
  readonly data: Data;
};

export interface Decider<C extends Command, E extends Event, S> {
  decide(command: C, state: S): E[];
  evolve(state: S, event: E): S;
  initialState(): S;
}

/** A business rule said no. `code` is stable and maps to an HTTP status (see domainStatus). */
export class DomainError extends KeelError {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    details?: unknown,
  ) {
    super(message, details);
  }
}

export const domainStatus = {
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  /** The thing existed and was removed. */
  GONE: 410,
  TENANT_SUSPENDED: 403,
  TENANT_ERASED: 410,
  /** The caller tried to hand out or take away a role above its own. */
  ROLE_TOO_HIGH: 403,
  /** Any other rule (invalid transition, last owner, ...). */
  RULE_VIOLATED: 422,
  LAST_OWNER: 422,
} as const;

export type DomainErrorCode = keyof typeof domainStatus;

/** Folds a stream's events into state. */
export function fold<C extends Command, E extends Event, S>(decider: Decider<C, E, S>, events: readonly Event[]): S {
  return events.reduce<S>((s, e) => decider.evolve(s, e as E), decider.initialState());
}
