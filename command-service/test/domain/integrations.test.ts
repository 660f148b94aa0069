import type { ConnectorEvent, FlowEvent, SourceEvent, WebhookEvent } from '@keel/shared-events';
import { describe, it } from 'vitest';
import { connectorDecider } from '../../src/domain/connector.ts';
import { flowDecider } from '../../src/domain/flow.ts';
import { sourceDecider } from '../../src/domain/source.ts';
import { webhookDecider } from '../../src/domain/webhook.ts';
import { deciderSpec } from './spec.ts';

describe('connector decider', () => {
  const spec = deciderSpec(connectorDecider);
  const installed: ConnectorEvent = {
    type: 'ConnectorInstalled',
    data: { connectorId: 'c1', kind: 'http', name: 'CRM', config: { baseUrl: 'https://crm.example' }, credentials: 'kenc1::abc' },
  };
  const paused: ConnectorEvent = { type: 'ConnectorPaused', data: { connectorId: 'c1' } };
  const removed: ConnectorEvent = { type: 'ConnectorRemoved', data: { connectorId: 'c1' } };

  it('installs once', () => {
    spec
      .given([])
      .when({ type: 'InstallConnector', data: { connectorId: 'c1', kind: 'http', name: 'CRM', config: { baseUrl: 'https://crm.example' }, credentials: 'kenc1::abc' } })
      .then([installed]);
    spec.given([installed]).when({ type: 'InstallConnector', data: { connectorId: 'c1', kind: 'http', name: 'x', config: {} } }).thenThrows('ALREADY_EXISTS');
  });

  it('rotates credentials of an installed connector', () => {
    spec
      .given([installed])
      .when({ type: 'RotateConnectorCredentials', data: { connectorId: 'c1', credentials: 'kenc1::new' } })
      .then([{ type: 'ConnectorCredentialsRotated', data: { connectorId: 'c1', credentials: 'kenc1::new' } }]);
    spec.given([]).when({ type: 'RotateConnectorCredentials', data: { connectorId: 'c1', credentials: 'x' } }).thenThrows('NOT_FOUND');
  });

  it('pauses and resumes, each idempotent', () => {
    spec.given([installed]).when({ type: 'PauseConnector', data: { connectorId: 'c1', reason: 'maintenance' } }).then([
      { type: 'ConnectorPaused', data: { connectorId: 'c1', reason: 'maintenance' } },
    ]);
    spec.given([installed, paused]).when({ type: 'PauseConnector', data: { connectorId: 'c1' } }).thenNothing();
    spec.given([installed, paused]).when({ type: 'ResumeConnector', data: { connectorId: 'c1' } }).then([{ type: 'ConnectorResumed', data: { connectorId: 'c1' } }]);
    spec.given([installed]).when({ type: 'ResumeConnector', data: { connectorId: 'c1' } }).thenNothing();
  });

  it('removes; a removed connector is gone for every other command', () => {
    spec.given([installed, paused]).when({ type: 'RemoveConnector', data: { connectorId: 'c1' } }).then([removed]);
    spec.given([installed, removed]).when({ type: 'RemoveConnector', data: { connectorId: 'c1' } }).thenNothing();
    spec.given([installed, removed]).when({ type: 'ResumeConnector', data: { connectorId: 'c1' } }).thenThrows('GONE');
    spec.given([installed, removed]).when({ type: 'RotateConnectorCredentials', data: { connectorId: 'c1', credentials: 'x' } }).thenThrows('GONE');
  });
});

describe('flow decider', () => {
  const spec = deciderSpec(flowDecider);
  const def1 = { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'transform', expression: 'data' }] };
  const def2 = { trigger: { eventType: 'RecordIngested', entityType: 'contact' }, steps: [{ type: 'transform', expression: 'data' }] };
  const defined: FlowEvent[] = [
    { type: 'FlowDefined', data: { flowId: 'f1', name: 'sync', definition: def1 } },
    { type: 'FlowVersionPublished', data: { flowId: 'f1', version: 1, definition: def1 } },
  ];

  it('defining publishes version 1, and enables it when asked', () => {
    spec.given([]).when({ type: 'DefineFlow', data: { flowId: 'f1', name: 'sync', definition: def1, enabled: false } }).then(defined);
    spec
      .given([])
      .when({ type: 'DefineFlow', data: { flowId: 'f1', name: 'sync', definition: def1, enabled: true } })
      .then([...defined, { type: 'FlowEnabled', data: { flowId: 'f1' } }]);
    spec.given(defined).when({ type: 'DefineFlow', data: { flowId: 'f1', name: 'x', definition: def1, enabled: false } }).thenThrows('ALREADY_EXISTS');
  });

  it('publishes numbered versions; republishing the current definition (in any key order) changes nothing', () => {
    spec.given(defined).when({ type: 'PublishFlowVersion', data: { flowId: 'f1', definition: def2 } }).then([
      { type: 'FlowVersionPublished', data: { flowId: 'f1', version: 2, definition: def2 } },
    ]);
    const reordered = { steps: def1.steps, trigger: def1.trigger };
    spec.given(defined).when({ type: 'PublishFlowVersion', data: { flowId: 'f1', definition: reordered } }).thenNothing();
    spec.given([]).when({ type: 'PublishFlowVersion', data: { flowId: 'f1', definition: def2 } }).thenThrows('NOT_FOUND');
  });

  it('enables and disables idempotently', () => {
    const enabled: FlowEvent = { type: 'FlowEnabled', data: { flowId: 'f1' } };
    spec.given(defined).when({ type: 'EnableFlow', data: { flowId: 'f1' } }).then([enabled]);
    spec.given([...defined, enabled]).when({ type: 'EnableFlow', data: { flowId: 'f1' } }).thenNothing();
    spec.given([...defined, enabled]).when({ type: 'DisableFlow', data: { flowId: 'f1' } }).then([{ type: 'FlowDisabled', data: { flowId: 'f1' } }]);
    spec.given(defined).when({ type: 'DisableFlow', data: { flowId: 'f1' } }).thenNothing();
  });
});

describe('webhook decider', () => {
  const spec = deciderSpec(webhookDecider);
  const registered: WebhookEvent = {
    type: 'WebhookEndpointRegistered',
    data: { webhookId: 'w1', url: 'https://example.test/hook', eventTypes: ['RecordIngested'], secret: 'kenc1::s' },
  };
  const dead = (deliveryId: string): WebhookEvent => ({
    type: 'WebhookDeliveryDeadLettered',
    data: { webhookId: 'w1', deliveryId, eventId: `e-${deliveryId}`, attempts: 8, reason: 'HTTP 500' },
  });
  const redriven = (deliveryId: string): WebhookEvent => ({ type: 'WebhookDeliveryRedriven', data: { webhookId: 'w1', deliveryId } });

  it('registers once', () => {
    spec
      .given([])
      .when({ type: 'RegisterWebhook', data: { webhookId: 'w1', url: 'https://example.test/hook', eventTypes: ['RecordIngested'], secret: 'kenc1::s' } })
      .then([registered]);
    spec
      .given([registered])
      .when({ type: 'RegisterWebhook', data: { webhookId: 'w1', url: 'https://x.test', eventTypes: ['RecordIngested'], secret: 's' } })
      .thenThrows('ALREADY_EXISTS');
  });

  it('updates only what changes', () => {
    spec.given([registered]).when({ type: 'UpdateWebhook', data: { webhookId: 'w1', url: 'https://example.test/v2' } }).then([
      { type: 'WebhookEndpointUpdated', data: { webhookId: 'w1', url: 'https://example.test/v2' } },
    ]);
    spec
      .given([registered])
      .when({ type: 'UpdateWebhook', data: { webhookId: 'w1', url: 'https://example.test/hook', eventTypes: ['RecordIngested'] } })
      .thenNothing();
    spec
      .given([registered])
      .when({ type: 'UpdateWebhook', data: { webhookId: 'w1', eventTypes: ['RecordIngested', 'FlowRunFailed'] } })
      .then([{ type: 'WebhookEndpointUpdated', data: { webhookId: 'w1', eventTypes: ['RecordIngested', 'FlowRunFailed'] } }]);
  });

  it('removes; a removed endpoint refuses updates and redrives', () => {
    const removed: WebhookEvent = { type: 'WebhookEndpointRemoved', data: { webhookId: 'w1' } };
    spec.given([registered]).when({ type: 'RemoveWebhook', data: { webhookId: 'w1' } }).then([removed]);
    spec.given([registered, removed]).when({ type: 'RemoveWebhook', data: { webhookId: 'w1' } }).thenNothing();
    spec.given([registered, removed]).when({ type: 'UpdateWebhook', data: { webhookId: 'w1', url: 'https://a.test' } }).thenThrows('GONE');
    spec.given([registered, removed]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1' } }).thenThrows('GONE');
  });

  it('redrives dead-lettered deliveries only, each once', () => {
    spec.given([registered, dead('d1'), dead('d2')]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1' } }).then([redriven('d1'), redriven('d2')]);
    spec.given([registered, dead('d1'), dead('d2')]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1', deliveryIds: ['d2', 'd2'] } }).then([redriven('d2')]);
    spec.given([registered, dead('d1'), redriven('d1')]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1', deliveryIds: ['d1'] } }).thenThrows('RULE_VIOLATED', {
      deliveryIds: ['d1'],
    });
    spec.given([registered, dead('d1'), redriven('d1')]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1' } }).thenNothing();
    // dead-lettered again after a redrive: redrivable again
    spec.given([registered, dead('d1'), redriven('d1'), dead('d1')]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1' } }).then([redriven('d1')]);
    spec.given([]).when({ type: 'RedriveWebhookDeliveries', data: { webhookId: 'w1' } }).thenThrows('NOT_FOUND');
  });
});

describe('inbound source decider', () => {
  const spec = deciderSpec(sourceDecider);
  const registered: SourceEvent = { type: 'InboundSourceRegistered', data: { sourceId: 's1', name: 'stripe', secret: 'kenc1::x' } };
  it('registers once and removes idempotently', () => {
    spec.given([]).when({ type: 'RegisterSource', data: { sourceId: 's1', name: 'stripe', secret: 'kenc1::x' } }).then([registered]);
    spec.given([registered]).when({ type: 'RegisterSource', data: { sourceId: 's1', name: 'stripe', secret: 'y' } }).thenThrows('ALREADY_EXISTS');
    spec.given([registered]).when({ type: 'RemoveSource', data: { sourceId: 's1' } }).then([{ type: 'InboundSourceRemoved', data: { sourceId: 's1' } }]);
    spec.given([registered, { type: 'InboundSourceRemoved', data: { sourceId: 's1' } }]).when({ type: 'RemoveSource', data: { sourceId: 's1' } }).thenNothing();
    spec.given([]).when({ type: 'RemoveSource', data: { sourceId: 's1' } }).thenThrows('NOT_FOUND');
  });
});
