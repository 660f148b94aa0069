import type { Event } from '@keel/shared-events';
import { expect } from 'vitest';
import { DomainError, type Command, type Decider, type DomainErrorCode } from '../../src/domain/decider.ts';

/** given(events).when(command).then(events) / .thenThrows(code): deciders read as specifications. */
export function deciderSpec<C extends Command, E extends Event, S>(decider: Decider<C, E, S>) {
  return {
    given(events: E[]) {
      const state = events.reduce(decider.evolve, decider.initialState());
      return {
        when(command: C) {
          return {
            then(expected: E[]) {
              expect(decider.decide(command, state)).toEqual(expected);
            },
            thenNothing() {
              expect(decider.decide(command, state)).toEqual([]);
            },
            thenThrows(code: DomainErrorCode, details?: unknown) {
              let thrown: unknown;
              try {
                decider.decide(command, state);
              } catch (e) {
                thrown = e;
              }
              expect(thrown).toBeInstanceOf(DomainError);
              expect((thrown as DomainError).code).toBe(code);
              if (details !== undefined) expect((thrown as DomainError).details).toEqual(details);
            },
          };
        },
        state: () => state,
      };
    },
  };
}
