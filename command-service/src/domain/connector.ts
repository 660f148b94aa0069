import type {
  ConnectorCredentialsRotated,
  ConnectorEvent,
  ConnectorInstalled,
  ConnectorKind,
  ConnectorPaused,
  ConnectorRemoved,
  ConnectorResumed,
  Json,
} from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/** connector-<tenantId>-<connectorId> */
export type ConnectorState =
  | { status: 'absent' }
  | { status: 'active' | 'paused' | 'removed'; kind: ConnectorKind; name: string; hasCredentials: boolean };

/** `credentials` arrive encrypted with the tenant's data key. */
export type InstallConnector = Command<
  'InstallConnector',
  { connectorId: string; kind: ConnectorKind; name: string; config: Json; credentials?: string }
>;
export type RotateConnectorCredentials = Command<'RotateConnectorCredentials', { connectorId: string; credentials: string }>;
export type PauseConnector = Command<'PauseConnector', { connectorId: string; reason?: string }>;
export type ResumeConnector = Command<'ResumeConnector', { connectorId: string }>;
export type RemoveConnector = Command<'RemoveConnector', { connectorId: string }>;
export type ConnectorCommand = InstallConnector | RotateConnectorCredentials | PauseConnector | ResumeConnector | RemoveConnector;

export function decideConnector(command: ConnectorCommand, state: ConnectorState): ConnectorEvent[] {
  const { connectorId } = command.data;
  if (command.type === 'InstallConnector') {
    if (state.status !== 'absent') throw new DomainError('ALREADY_EXISTS', 'the connector already exists');
    const { kind, name, config, credentials } = command.data;
    const data: ConnectorInstalled['data'] = { connectorId, kind, name, config };
    if (credentials !== undefined) data.credentials = credentials;
    return [{ type: 'ConnectorInstalled', data } satisfies ConnectorInstalled];
  }
  if (state.status === 'absent') throw new DomainError('NOT_FOUND', 'connector not found');
  if (state.status === 'removed') {
    if (command.type === 'RemoveConnector') return [];
    throw new DomainError('GONE', 'the connector was removed');
  }
  switch (command.type) {
    case 'RotateConnectorCredentials':
      return [
        { type: 'ConnectorCredentialsRotated', data: { connectorId, credentials: command.data.credentials } } satisfies ConnectorCredentialsRotated,
      ];
    case 'PauseConnector': {
      if (state.status === 'paused') return [];
      const data: ConnectorPaused['data'] = { connectorId };
      if (command.data.reason !== undefined) data.reason = command.data.reason;
      return [{ type: 'ConnectorPaused', data } satisfies ConnectorPaused];
    }
    case 'ResumeConnector':
      if (state.status === 'active') return [];
      return [{ type: 'ConnectorResumed', data: { connectorId } } satisfies ConnectorResumed];
    case 'RemoveConnector':
      return [{ type: 'ConnectorRemoved', data: { connectorId } } satisfies ConnectorRemoved];
  }
}

export function evolveConnector(state: ConnectorState, event: ConnectorEvent): ConnectorState {
  switch (event.type) {
    case 'ConnectorInstalled':
      return { status: 'active', kind: event.data.kind, name: event.data.name, hasCredentials: event.data.credentials !== undefined };
    case 'ConnectorCredentialsRotated':
      return state.status === 'absent' ? state : { ...state, hasCredentials: true };
    case 'ConnectorPaused':
      return state.status === 'active' ? { ...state, status: 'paused' } : state;
    case 'ConnectorResumed':
      return state.status === 'paused' ? { ...state, status: 'active' } : state;
    case 'ConnectorRemoved':
      return state.status === 'absent' ? state : { ...state, status: 'removed' };
    default:
      return state;
  }
}

export const connectorDecider: Decider<ConnectorCommand, ConnectorEvent, ConnectorState> = {
  decide: decideConnector,
  evolve: evolveConnector,
  initialState: () => ({ status: 'absent' }),
};
