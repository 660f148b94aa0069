import type {
  WebhookDeliveryRedriven,
  WebhookEndpointRegistered,
  WebhookEndpointRemoved,
  WebhookEndpointUpdated,
  WebhookEvent,
} from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/**
 * webhook-<tenantId>-<webhookId>: an outbound endpoint. Delivery outcomes recorded by the
 * webhook runner in this stream are folded too, so a redrive can be checked against what was
 * actually dead-lettered.
 */
export type WebhookState =
  | { status: 'absent' }
  | { status: 'active' | 'removed'; url: string; eventTypes: string[]; deadLettered: Record<string, true> };

/** `secret` arrives encrypted with the tenant's data key. */
export type RegisterWebhook = Command<'RegisterWebhook', { webhookId: string; url: string; eventTypes: string[]; secret: string }>;
export type UpdateWebhook = Command<'UpdateWebhook', { webhookId: string; url?: string; eventTypes?: string[] }>;
export type RemoveWebhook = Command<'RemoveWebhook', { webhookId: string }>;
/** No ids: every delivery dead-lettered so far. */
export type RedriveWebhookDeliveries = Command<'RedriveWebhookDeliveries', { webhookId: string; deliveryIds?: string[] }>;
export type WebhookCommand = RegisterWebhook | UpdateWebhook | RemoveWebhook | RedriveWebhookDeliveries;

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

export function decideWebhook(command: WebhookCommand, state: WebhookState): WebhookEvent[] {
  const { webhookId } = command.data;
  if (command.type === 'RegisterWebhook') {
    if (state.status !== 'absent') throw new DomainError('ALREADY_EXISTS', 'the webhook already exists');
    const { url, eventTypes, secret } = command.data;
    return [{ type: 'WebhookEndpointRegistered', data: { webhookId, url, eventTypes, secret } } satisfies WebhookEndpointRegistered];
  }
  if (state.status === 'absent') throw new DomainError('NOT_FOUND', 'webhook not found');
  if (state.status === 'removed') {
    if (command.type === 'RemoveWebhook') return [];
    throw new DomainError('GONE', 'the webhook was removed');
  }
  switch (command.type) {
    case 'UpdateWebhook': {
      const data: WebhookEndpointUpdated['data'] = { webhookId };
      if (command.data.url !== undefined && command.data.url !== state.url) data.url = command.data.url;
      if (command.data.eventTypes !== undefined && !sameSet(command.data.eventTypes, state.eventTypes))
        data.eventTypes = command.data.eventTypes;
      if (data.url === undefined && data.eventTypes === undefined) return [];
      return [{ type: 'WebhookEndpointUpdated', data } satisfies WebhookEndpointUpdated];
    }
    case 'RemoveWebhook':
      return [{ type: 'WebhookEndpointRemoved', data: { webhookId } } satisfies WebhookEndpointRemoved];
    case 'RedriveWebhookDeliveries': {
      const dead = Object.keys(state.deadLettered);
      const ids = command.data.deliveryIds ?? dead;
      const notDead = ids.filter((id) => !state.deadLettered[id]);
      if (notDead.length)
        throw new DomainError('RULE_VIOLATED', 'only dead-lettered deliveries can be redriven', { deliveryIds: notDead });
      return [...new Set(ids)].map(
        (deliveryId) => ({ type: 'WebhookDeliveryRedriven', data: { webhookId, deliveryId } }) satisfies WebhookDeliveryRedriven,
      );
    }
  }
}

export function evolveWebhook(state: WebhookState, event: WebhookEvent): WebhookState {
  switch (event.type) {
    case 'WebhookEndpointRegistered':
      return { status: 'active', url: event.data.url, eventTypes: event.data.eventTypes, deadLettered: {} };
    case 'WebhookEndpointUpdated':
      if (state.status === 'absent') return state;
      return { ...state, url: event.data.url ?? state.url, eventTypes: event.data.eventTypes ?? state.eventTypes };
    case 'WebhookEndpointRemoved':
      return state.status === 'absent' ? state : { ...state, status: 'removed' };
    case 'WebhookDeliveryDeadLettered':
      return state.status === 'absent' ? state : { ...state, deadLettered: { ...state.deadLettered, [event.data.deliveryId]: true } };
    case 'WebhookDeliveryRedriven':
    case 'WebhookDeliverySucceeded': {
      if (state.status === 'absent' || !state.deadLettered[event.data.deliveryId]) return state;
      const { [event.data.deliveryId]: _gone, ...rest } = state.deadLettered;
      return { ...state, deadLettered: rest };
    }
    default:
      return state;
  }
}

export const webhookDecider: Decider<WebhookCommand, WebhookEvent, WebhookState> = {
  decide: decideWebhook,
  evolve: evolveWebhook,
  initialState: () => ({ status: 'absent' }),
};
