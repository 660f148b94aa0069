/**
 * The event catalogue as TypeScript types. Each type mirrors the newest Avro schema of the same
 * name in shared-events/schemas/ (the schema is the contract; these types are how code sees it).
 *
 * Conventions, so that data stays plain JSON from the HTTP edge to Kafka and back:
 * - optional fields are absent (never `null`) in memory; Avro stores them as `null`;
 * - `Json` fields hold any JSON value; Avro stores them as strings with `logicalType: "json"`;
 * - instants inside data are ISO-8601 strings (`IsoTimestamp`); envelope instants are Dates;
 * - secrets and personal fields (`credentials`, `secret`, `email`) are strings that the writer
 *   may have encrypted; the contract does not care which.
 */
import type { EventData, RecordedEvent } from '../envelope.ts';

/** Emmett-style event: what a decider emits and what `evolve` folds (a RecordedEvent fits it). */
export type Event<Type extends string = string, Data extends EventData = EventData> = {
  readonly type: Type;
  readonly data: Data;
};

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** ISO-8601 date-time string, e.g. `2024-05-01T12:00:00.000Z`. */
export type IsoTimestamp = string;

export const roles = ['owner', 'admin', 'operator', 'auditor', 'viewer'] as const;
export type Role = (typeof roles)[number];

export const connectorKinds = ['http', 'postgres'] as const;
export type ConnectorKind = (typeof connectorKinds)[number];

export const receivedViaValues = ['api', 'webhook'] as const;
export type ReceivedVia = (typeof receivedViaValues)[number];

// ---------------------------------------------------------------------------------------- tenant-*
export type TenantCreatedData = { name: string };
export type TenantSuspendedData = { reason: string };
export type TenantReinstatedData = Record<string, never>;
export type TenantErasedData = { reason: string };

export type TenantCreated = Event<'TenantCreated', TenantCreatedData>;
export type TenantSuspended = Event<'TenantSuspended', TenantSuspendedData>;
export type TenantReinstated = Event<'TenantReinstated', TenantReinstatedData>;
export type TenantErased = Event<'TenantErased', TenantErasedData>;
export type TenantEvent = TenantCreated | TenantSuspended | TenantReinstated | TenantErased;

// ---------------------------------------------------------------------------------------- access-*
export type UserInvitedData = { userId: string; /** personal; may be encrypted */ email: string; role: Role };
export type RoleGrantedData = { userId: string; role: Role };
export type RoleRevokedData = { userId: string; role: Role };
export type ApiKeyIssuedData = { keyId: string; name: string; role: Role; secretHash: string };
export type ApiKeyRevokedData = { keyId: string };
export type AccessDeniedData = {
  /** Absent when the caller presented no valid key. */
  keyId?: string;
  method: string;
  path: string;
  /** The tenant the caller tried to reach, when it is not its own. */
  targetTenantId?: string;
  reason: string;
};

export type UserInvited = Event<'UserInvited', UserInvitedData>;
export type RoleGranted = Event<'RoleGranted', RoleGrantedData>;
export type RoleRevoked = Event<'RoleRevoked', RoleRevokedData>;
export type ApiKeyIssued = Event<'ApiKeyIssued', ApiKeyIssuedData>;
export type ApiKeyRevoked = Event<'ApiKeyRevoked', ApiKeyRevokedData>;
export type AccessDenied = Event<'AccessDenied', AccessDeniedData>;
export type AccessEvent = UserInvited | RoleGranted | RoleRevoked | ApiKeyIssued | ApiKeyRevoked | AccessDenied;

// ------------------------------------------------------------------------------------- connector-*
export type ConnectorInstalledData = {
  connectorId: string;
  kind: ConnectorKind;
  name: string;
  config: Json;
  /** Encrypted credentials. */
  credentials?: string;
};
export type ConnectorCredentialsRotatedData = { connectorId: string; /** encrypted */ credentials: string };
export type ConnectorPausedData = {
  connectorId: string;
  /** Why, e.g. "circuit open" when paused by a runner rather than a person. */
  reason?: string;
};
export type ConnectorResumedData = { connectorId: string };
export type ConnectorRemovedData = { connectorId: string };

export type ConnectorInstalled = Event<'ConnectorInstalled', ConnectorInstalledData>;
export type ConnectorCredentialsRotated = Event<'ConnectorCredentialsRotated', ConnectorCredentialsRotatedData>;
export type ConnectorPaused = Event<'ConnectorPaused', ConnectorPausedData>;
export type ConnectorResumed = Event<'ConnectorResumed', ConnectorResumedData>;
export type ConnectorRemoved = Event<'ConnectorRemoved', ConnectorRemovedData>;
export type ConnectorEvent =
  | ConnectorInstalled
  | ConnectorCredentialsRotated
  | ConnectorPaused
  | ConnectorResumed
  | ConnectorRemoved;

// ------------------------------------------------------------------------------------------ flow-*
export type FlowDefinedData = { flowId: string; name: string; /** trigger + steps */ definition: Json };
export type FlowVersionPublishedData = { flowId: string; version: number; definition: Json };
export type FlowEnabledData = { flowId: string };
export type FlowDisabledData = { flowId: string };

export type FlowDefined = Event<'FlowDefined', FlowDefinedData>;
export type FlowVersionPublished = Event<'FlowVersionPublished', FlowVersionPublishedData>;
export type FlowEnabled = Event<'FlowEnabled', FlowEnabledData>;
export type FlowDisabled = Event<'FlowDisabled', FlowDisabledData>;
export type FlowEvent = FlowDefined | FlowVersionPublished | FlowEnabled | FlowDisabled;

// ------------------------------------------------------------------------------------------- run-*
export type FlowRunStartedData = {
  runId: string;
  flowId: string;
  flowVersion: number;
  triggerEventId: string;
  input: Json;
};
export type StepSucceededData = { runId: string; stepIndex: number; attempt: number; summary: Json };
export type StepFailedData = { runId: string; stepIndex: number; attempt: number; error: string };
export type StepRetryScheduledData = { runId: string; stepIndex: number; attempt: number; retryAt: IsoTimestamp };
export type FlowRunCompletedData = { runId: string; durationMs: number };
export type FlowRunFailedData = { runId: string; error: string };
export type FlowRunDeadLetteredData = { runId: string; reason: string };

export type FlowRunStarted = Event<'FlowRunStarted', FlowRunStartedData>;
export type StepSucceeded = Event<'StepSucceeded', StepSucceededData>;
export type StepFailed = Event<'StepFailed', StepFailedData>;
export type StepRetryScheduled = Event<'StepRetryScheduled', StepRetryScheduledData>;
export type FlowRunCompleted = Event<'FlowRunCompleted', FlowRunCompletedData>;
export type FlowRunFailed = Event<'FlowRunFailed', FlowRunFailedData>;
export type FlowRunDeadLettered = Event<'FlowRunDeadLettered', FlowRunDeadLetteredData>;
export type RunEvent =
  | FlowRunStarted
  | StepSucceeded
  | StepFailed
  | StepRetryScheduled
  | FlowRunCompleted
  | FlowRunFailed
  | FlowRunDeadLettered;

// --------------------------------------------------------------------------------------- webhook-*
export type WebhookEndpointRegisteredData = {
  webhookId: string;
  url: string;
  eventTypes: string[];
  /** Encrypted signing secret. */
  secret: string;
};
export type WebhookEndpointUpdatedData = { webhookId: string; url?: string; eventTypes?: string[] };
export type WebhookEndpointRemovedData = { webhookId: string };
export type WebhookDeliverySucceededData = {
  webhookId: string;
  deliveryId: string;
  eventId: string;
  attempt: number;
  status: number;
  latencyMs: number;
};
export type WebhookDeliveryFailedData = {
  webhookId: string;
  deliveryId: string;
  eventId: string;
  attempt: number;
  /** HTTP status; absent when there was no answer (timeout, connection refused). */
  status?: number;
  error: string;
  /** Absent when no further attempt follows. */
  nextAttemptAt?: IsoTimestamp;
};
export type WebhookDeliveryDeadLetteredData = {
  webhookId: string;
  deliveryId: string;
  eventId: string;
  attempts: number;
  reason: string;
};
export type WebhookDeliveryRedrivenData = { webhookId: string; deliveryId: string };

export type WebhookEndpointRegistered = Event<'WebhookEndpointRegistered', WebhookEndpointRegisteredData>;
export type WebhookEndpointUpdated = Event<'WebhookEndpointUpdated', WebhookEndpointUpdatedData>;
export type WebhookEndpointRemoved = Event<'WebhookEndpointRemoved', WebhookEndpointRemovedData>;
export type WebhookDeliverySucceeded = Event<'WebhookDeliverySucceeded', WebhookDeliverySucceededData>;
export type WebhookDeliveryFailed = Event<'WebhookDeliveryFailed', WebhookDeliveryFailedData>;
export type WebhookDeliveryDeadLettered = Event<'WebhookDeliveryDeadLettered', WebhookDeliveryDeadLetteredData>;
export type WebhookDeliveryRedriven = Event<'WebhookDeliveryRedriven', WebhookDeliveryRedrivenData>;
export type WebhookEvent =
  | WebhookEndpointRegistered
  | WebhookEndpointUpdated
  | WebhookEndpointRemoved
  | WebhookDeliverySucceeded
  | WebhookDeliveryFailed
  | WebhookDeliveryDeadLettered
  | WebhookDeliveryRedriven;

// ---------------------------------------------------------------------------------------- source-*
export type InboundSourceRegisteredData = { sourceId: string; name: string; /** encrypted HMAC secret */ secret: string };
export type InboundSourceRemovedData = { sourceId: string };

export type InboundSourceRegistered = Event<'InboundSourceRegistered', InboundSourceRegisteredData>;
export type InboundSourceRemoved = Event<'InboundSourceRemoved', InboundSourceRemovedData>;
export type SourceEvent = InboundSourceRegistered | InboundSourceRemoved;

// ---------------------------------------------------------------------------------------- record-*
/** RecordIngested v1: only ever read from old logs, and upcast to v2 on read. */
export type RecordIngestedV1Data = { source: string; entityType: string; externalId: string; payload: Json };
/** RecordIngested v2 (newest). */
export type RecordIngestedData = {
  source: string;
  entityType: string;
  externalId: string;
  payload: Json;
  receivedVia: ReceivedVia;
  /** sha-256 hex of `canonicalJson(payload)`. */
  contentHash: string;
};

export type RecordIngested = Event<'RecordIngested', RecordIngestedData>;
export type RecordEvent = RecordIngested;

// --------------------------------------------------------------------------------------------- all
export type KeelEvent =
  | TenantEvent
  | AccessEvent
  | ConnectorEvent
  | FlowEvent
  | RunEvent
  | WebhookEvent
  | SourceEvent
  | RecordEvent;

export type KeelEventType = KeelEvent['type'];

/** The (newest) data type of an event type: `EventDataOf<'RecordIngested'>`. */
export type EventDataOf<T extends KeelEventType> = Extract<KeelEvent, { type: T }>['data'];

/** A recorded event of the catalogue, narrowed by `type` (switch on `event.type`). */
export type KeelRecordedEvent = { [T in KeelEventType]: RecordedEvent<T, EventDataOf<T>> }[KeelEventType];

/** The recorded events of one union, e.g. `RecordedOf<RunEvent>` for a run projector. */
export type RecordedOf<E extends Event> = E extends Event<infer T, infer D> ? RecordedEvent<T, D> : never;

/** Stream categories and the types that live in each (the stream id is `{category}-{tenantId}-{id}`). */
export const eventTypesByCategory = {
  tenant: ['TenantCreated', 'TenantSuspended', 'TenantReinstated', 'TenantErased'],
  access: ['UserInvited', 'RoleGranted', 'RoleRevoked', 'ApiKeyIssued', 'ApiKeyRevoked', 'AccessDenied'],
  connector: [
    'ConnectorInstalled',
    'ConnectorCredentialsRotated',
    'ConnectorPaused',
    'ConnectorResumed',
    'ConnectorRemoved',
  ],
  flow: ['FlowDefined', 'FlowVersionPublished', 'FlowEnabled', 'FlowDisabled'],
  run: [
    'FlowRunStarted',
    'StepSucceeded',
    'StepFailed',
    'StepRetryScheduled',
    'FlowRunCompleted',
    'FlowRunFailed',
    'FlowRunDeadLettered',
  ],
  webhook: [
    'WebhookEndpointRegistered',
    'WebhookEndpointUpdated',
    'WebhookEndpointRemoved',
    'WebhookDeliverySucceeded',
    'WebhookDeliveryFailed',
    'WebhookDeliveryDeadLettered',
    'WebhookDeliveryRedriven',
  ],
  source: ['InboundSourceRegistered', 'InboundSourceRemoved'],
  record: ['RecordIngested'],
} as const satisfies Record<string, readonly KeelEventType[]>;

export type StreamCategory = keyof typeof eventTypesByCategory;

export const keelEventTypes: readonly KeelEventType[] = Object.values(eventTypesByCategory).flat();

const categoryByType = new Map<string, StreamCategory>(
  Object.entries(eventTypesByCategory).flatMap(([c, types]) => types.map((t) => [t, c as StreamCategory] as const)),
);

/** The stream category an event type belongs to; undefined for a type outside the catalogue. */
export function categoryOfEventType(type: string): StreamCategory | undefined {
  return categoryByType.get(type);
}

export function isKeelEventType(type: string): type is KeelEventType {
  return categoryByType.has(type);
}

/** Narrows a recorded event of any type to one catalogue type. */
export function isEventOfType<T extends KeelEventType>(
  event: RecordedEvent,
  type: T,
): event is RecordedEvent<T, EventDataOf<T>> {
  return event.type === type;
}
