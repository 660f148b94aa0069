import { canonicalJson, type FlowDefined, type FlowDisabled, type FlowEnabled, type FlowEvent, type FlowVersionPublished, type Json } from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/**
 * flow-<tenantId>-<flowId>. Defining a flow publishes its first version, since runners run
 * published versions only; later definitions are published as new versions.
 */
export type FlowState =
  | { status: 'absent' }
  | { status: 'defined'; name: string; enabled: boolean; version: number; definition: Json };

export type DefineFlow = Command<'DefineFlow', { flowId: string; name: string; definition: Json; enabled: boolean }>;
export type PublishFlowVersion = Command<'PublishFlowVersion', { flowId: string; definition: Json }>;
export type EnableFlow = Command<'EnableFlow', { flowId: string }>;
export type DisableFlow = Command<'DisableFlow', { flowId: string }>;
export type FlowCommand = DefineFlow | PublishFlowVersion | EnableFlow | DisableFlow;

export function decideFlow(command: FlowCommand, state: FlowState): FlowEvent[] {
  const { flowId } = command.data;
  if (command.type === 'DefineFlow') {
    if (state.status !== 'absent') throw new DomainError('ALREADY_EXISTS', 'the flow already exists');
    const { name, definition, enabled } = command.data;
    const events: FlowEvent[] = [
      { type: 'FlowDefined', data: { flowId, name, definition } } satisfies FlowDefined,
      { type: 'FlowVersionPublished', data: { flowId, version: 1, definition } } satisfies FlowVersionPublished,
    ];
    if (enabled) events.push({ type: 'FlowEnabled', data: { flowId } } satisfies FlowEnabled);
    return events;
  }
  if (state.status === 'absent') throw new DomainError('NOT_FOUND', 'flow not found');
  switch (command.type) {
    case 'PublishFlowVersion':
      // Publishing the definition that is already current changes nothing.
      if (canonicalJson(command.data.definition) === canonicalJson(state.definition)) return [];
      return [
        {
          type: 'FlowVersionPublished',
          data: { flowId, version: state.version + 1, definition: command.data.definition },
        } satisfies FlowVersionPublished,
      ];
    case 'EnableFlow':
      return state.enabled ? [] : [{ type: 'FlowEnabled', data: { flowId } } satisfies FlowEnabled];
    case 'DisableFlow':
      return state.enabled ? [{ type: 'FlowDisabled', data: { flowId } } satisfies FlowDisabled] : [];
  }
}

export function evolveFlow(state: FlowState, event: FlowEvent): FlowState {
  switch (event.type) {
    case 'FlowDefined':
      return { status: 'defined', name: event.data.name, enabled: false, version: 0, definition: event.data.definition };
    case 'FlowVersionPublished':
      return state.status === 'absent' ? state : { ...state, version: event.data.version, definition: event.data.definition };
    case 'FlowEnabled':
      return state.status === 'absent' ? state : { ...state, enabled: true };
    case 'FlowDisabled':
      return state.status === 'absent' ? state : { ...state, enabled: false };
    default:
      return state;
  }
}

export const flowDecider: Decider<FlowCommand, FlowEvent, FlowState> = {
  decide: decideFlow,
  evolve: evolveFlow,
  initialState: () => ({ status: 'absent' }),
};
