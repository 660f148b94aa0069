import type { InboundSourceRegistered, InboundSourceRemoved, SourceEvent } from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/** source-<tenantId>-<sourceId>: an inbound webhook source and its (encrypted) HMAC secret. */
export type SourceState = { status: 'absent' } | { status: 'active' | 'removed'; name: string; secret: string };

export type RegisterSource = Command<'RegisterSource', { sourceId: string; name: string; secret: string }>;
export type RemoveSource = Command<'RemoveSource', { sourceId: string }>;
export type SourceCommand = RegisterSource | RemoveSource;

export function decideSource(command: SourceCommand, state: SourceState): SourceEvent[] {
  const { sourceId } = command.data;
  switch (command.type) {
    case 'RegisterSource':
      if (state.status !== 'absent') throw new DomainError('ALREADY_EXISTS', 'the source already exists');
      return [
        { type: 'InboundSourceRegistered', data: { sourceId, name: command.data.name, secret: command.data.secret } } satisfies InboundSourceRegistered,
      ];
    case 'RemoveSource':
      if (state.status === 'absent') throw new DomainError('NOT_FOUND', 'source not found');
      if (state.status === 'removed') return [];
      return [{ type: 'InboundSourceRemoved', data: { sourceId } } satisfies InboundSourceRemoved];
  }
}

export function evolveSource(state: SourceState, event: SourceEvent): SourceState {
  switch (event.type) {
    case 'InboundSourceRegistered':
      return { status: 'active', name: event.data.name, secret: event.data.secret };
    case 'InboundSourceRemoved':
      return state.status === 'absent' ? state : { ...state, status: 'removed' };
    default:
      return state;
  }
}

export const sourceDecider: Decider<SourceCommand, SourceEvent, SourceState> = {
  decide: decideSource,
  evolve: evolveSource,
  initialState: () => ({ status: 'absent' }),
};
