import type { EventDataOf, Json, KeelEventType } from './catalog.ts';
import { canonicalHash } from './canonical-json.ts';

const orderPayload: Json = { total: 99.5, currency: 'EUR', lines: [{ sku: 'A', qty: 2 }], note: null, paid: true };

/**
 * One realistic data value per catalogue type (newest version), with every optional field set.
 * Typed against the TypeScript catalogue and validated against the Avro schemas by the tests, so
 * it also proves the two agree. Handy for docs, OpenAPI examples and other packages' tests.
 */
export const exampleEventData: { [T in KeelEventType]: EventDataOf<T> } = {
  TenantCreated: { name: 'Acme Corp' },
  TenantSuspended: { reason: 'unpaid invoice' },
  TenantReinstated: {},
  TenantErased: { reason: 'customer request (GDPR art. 17)' },

  UserInvited: { userId: 'usr_01', email: 'enc:v1:AbCdEf==', role: 'operator' },
  RoleGranted: { userId: 'usr_01', role: 'admin' },
  RoleRevoked: { userId: 'usr_01', role: 'operator' },
  ApiKeyIssued: { keyId: 'key_01', name: 'ci pipeline', role: 'operator', secretHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA' },
  ApiKeyRevoked: { keyId: 'key_01' },
  AccessDenied: {
    keyId: 'key_01',
    method: 'GET',
    path: '/v1/tenants/other/audit',
    targetTenantId: '0190a5c4-7c1e-7000-8000-000000000002',
    reason: 'tenant mismatch',
  },

  ConnectorInstalled: {
    connectorId: 'con_01',
    kind: 'http',
    name: 'CRM',
    config: { baseUrl: 'https://crm.example.com/api', timeoutMs: 5000, headers: { 'X-Team': 'ops' } },
    credentials: 'enc:v1:c2VjcmV0',
  },
  ConnectorCredentialsRotated: { connectorId: 'con_01', credentials: 'enc:v1:bmV3' },
  ConnectorPaused: { connectorId: 'con_01', reason: 'circuit open' },
  ConnectorResumed: { connectorId: 'con_01' },
  ConnectorRemoved: { connectorId: 'con_01' },

  FlowDefined: {
    flowId: 'flw_01',
    name: 'orders to CRM',
    definition: {
      trigger: { eventType: 'RecordIngested', filter: { entityType: 'order' } },
      steps: [
        { kind: 'transform', expression: '{ "id": externalId, "total": payload.total }' },
        { kind: 'http', connectorId: 'con_01', method: 'POST', path: '/orders' },
      ],
    },
  },
  FlowVersionPublished: {
    flowId: 'flw_01',
    version: 2,
    definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ kind: 'http', connectorId: 'con_01' }] },
  },
  FlowEnabled: { flowId: 'flw_01' },
  FlowDisabled: { flowId: 'flw_01' },

  FlowRunStarted: {
    runId: 'run_01',
    flowId: 'flw_01',
    flowVersion: 2,
    triggerEventId: '0190a5c4-7c1e-7000-8000-0000000000aa',
    input: { externalId: 'o-1001', payload: { total: 99.5, lines: [{ sku: 'A', qty: 2 }] } },
  },
  StepSucceeded: { runId: 'run_01', stepIndex: 1, attempt: 2, summary: { status: 201, latencyMs: 87 } },
  StepFailed: { runId: 'run_01', stepIndex: 1, attempt: 1, error: 'HTTP 503 from crm.example.com' },
  StepRetryScheduled: { runId: 'run_01', stepIndex: 1, attempt: 2, retryAt: '2024-05-01T12:00:04.250Z' },
  FlowRunCompleted: { runId: 'run_01', durationMs: 4312 },
  FlowRunFailed: { runId: 'run_01', error: 'step 1 failed after 5 attempts' },
  FlowRunDeadLettered: { runId: 'run_01', reason: 'retries exhausted' },

  WebhookEndpointRegistered: {
    webhookId: 'whk_01',
    url: 'https://hooks.example.com/keel',
    eventTypes: ['RecordIngested', 'FlowRunFailed'],
    secret: 'enc:v1:d2hzZWM=',
  },
  WebhookEndpointUpdated: { webhookId: 'whk_01', url: 'https://hooks.example.com/keel2', eventTypes: ['RecordIngested'] },
  WebhookEndpointRemoved: { webhookId: 'whk_01' },
  WebhookDeliverySucceeded: {
    webhookId: 'whk_01',
    deliveryId: 'dlv_01',
    eventId: '0190a5c4-7c1e-7000-8000-0000000000aa',
    attempt: 1,
    status: 204,
    latencyMs: 35,
  },
  WebhookDeliveryFailed: {
    webhookId: 'whk_01',
    deliveryId: 'dlv_01',
    eventId: '0190a5c4-7c1e-7000-8000-0000000000aa',
    attempt: 3,
    status: 500,
    error: 'HTTP 500',
    nextAttemptAt: '2024-05-01T12:01:00.000Z',
  },
  WebhookDeliveryDeadLettered: {
    webhookId: 'whk_01',
    deliveryId: 'dlv_01',
    eventId: '0190a5c4-7c1e-7000-8000-0000000000aa',
    attempts: 8,
    reason: 'retries exhausted',
  },
  WebhookDeliveryRedriven: { webhookId: 'whk_01', deliveryId: 'dlv_01' },

  InboundSourceRegistered: { sourceId: 'src_01', name: 'shop webhooks', secret: 'enc:v1:aG1hYw==' },
  InboundSourceRemoved: { sourceId: 'src_01' },

  RecordIngested: {
    source: 'shop',
    entityType: 'order',
    externalId: 'o-1001',
    payload: orderPayload,
    receivedVia: 'webhook',
    contentHash: canonicalHash(orderPayload),
  },
};
