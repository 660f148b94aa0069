import type { RecordedEvent } from '@keel/shared-events';

/**
 * The dashboard read models as plain rows and pure evolve functions. `applyDashboardEvent` folds
 * one event into an in-memory slice of the model; the projector loads the rows a batch can touch,
 * folds the batch, and writes back what changed. The same fold serves the live projector, the
 * rebuild, and the unit tests, which is why the rebuilt model equals the incrementally built one.
 */
export type RunStatus = 'running' | 'retrying' | 'succeeded' | 'failed' | 'dead_lettered';

export interface FlowRunRow {
  tenantId: string;
  runId: string;
  flowId: string | null;
  flowVersion: number | null;
  status: RunStatus;
  triggerEventId: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  stepsSucceeded: number;
  stepsFailed: number;
  retriesScheduled: number;
  lastStepIndex: number | null;
  lastError: string | null;
  startedPosition: number;
  updatedPosition: number;
}

export type CircuitState = 'closed' | 'open' | 'half_open';
export type ConnectorStatus = 'active' | 'paused' | 'removed';

export interface ConnectorRow {
  tenantId: string;
  connectorId: string;
  name: string | null;
  kind: string | null;
  status: ConnectorStatus;
  successes: number;
  failures: number;
  consecutiveFailures: number;
  lastError: string | null;
  lastSuccessAt: string | null;
  lastFailureAt: string | null;
  circuit: CircuitState;
  updatedPosition: number;
}

/** Which connector each step of a flow version calls (null: a step without one, e.g. a pure transform). */
export interface FlowVersionRow {
  tenantId: string;
  flowId: string;
  version: number;
  name: string | null;
  enabled: boolean;
  stepConnectors: (string | null)[];
  updatedPosition: number;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed' | 'dead_lettered';
export const deliveryStatuses: readonly DeliveryStatus[] = ['pending', 'succeeded', 'failed', 'dead_lettered'];

export interface WebhookEndpointRow {
  tenantId: string;
  webhookId: string;
  url: string | null;
  eventTypes: string[];
  active: boolean;
  pending: number;
  succeeded: number;
  failed: number;
  deadLettered: number;
  lastError: string | null;
  lastDeliveredAt: string | null;
  updatedPosition: number;
}

export interface DeliveryRow {
  tenantId: string;
  webhookId: string;
  eventId: string;
  deliveryId: string | null;
  eventType: string | null;
  status: DeliveryStatus;
  attempts: number;
  lastHttpStatus: number | null;
  lastError: string | null;
  latencyMs: number | null;
  nextAttemptAt: string | null;
  createdPosition: number;
  updatedPosition: number;
  updatedAt: string;
}

export interface IngestRateRow {
  tenantId: string;
  /** Start of the hour (UTC, ISO) in which the events were recorded. */
  hour: string;
  eventType: string;
  count: number;
}

/** A consecutive-failure count at which the dashboard shows a connector's circuit as open (the runners' default). */
export const CIRCUIT_OPEN_AFTER = 5;

const DELIVERY_OUTCOME_TYPES = new Set([
  'WebhookDeliverySucceeded',
  'WebhookDeliveryFailed',
  'WebhookDeliveryDeadLettered',
  'WebhookDeliveryRedriven',
]);

const RUN_TYPES = new Set([
  'FlowRunStarted',
  'StepSucceeded',
  'StepFailed',
  'StepRetryScheduled',
  'FlowRunCompleted',
  'FlowRunFailed',
  'FlowRunDeadLettered',
]);

// ----------------------------------------------------------------------------------------- keys
export const runKey = (tenantId: string, runId: string) => `${tenantId}\u0000${runId}`;
export const connectorKey = (tenantId: string, connectorId: string) => `${tenantId}\u0000${connectorId}`;
export const flowVersionKey = (tenantId: string, flowId: string, version: number) =>
  `${tenantId}\u0000${flowId}\u0000${version}`;
export const endpointKey = (tenantId: string, webhookId: string) => `${tenantId}\u0000${webhookId}`;
export const deliveryKey = (tenantId: string, webhookId: string, eventId: string) =>
  `${tenantId}\u0000${webhookId}\u0000${eventId}`;
export const ingestKey = (tenantId: string, hour: string, eventType: string) =>
  `${tenantId}\u0000${hour}\u0000${eventType}`;

export function hourOf(d: Date): string {
  const h = new Date(d.getTime());
  h.setUTCMinutes(0, 0, 0);
  return h.toISOString();
}

// ---------------------------------------------------------------------------------------- state
export interface Table<Row> {
  rows: Map<string, Row>;
  dirty: Set<string>;
}

export interface DashboardState {
  runs: Table<FlowRunRow>;
  connectors: Table<ConnectorRow>;
  flowVersions: Table<FlowVersionRow>;
  endpoints: Table<WebhookEndpointRow>;
  deliveries: Table<DeliveryRow>;
  ingest: Table<IngestRateRow>;
  /** Per tenant: global position of the last event folded (events at or below it are redeliveries). */
  positions: Table<number>;
}

const table = <Row>(): Table<Row> => ({ rows: new Map(), dirty: new Set() });

export function emptyDashboardState(): DashboardState {
  return {
    runs: table(),
    connectors: table(),
    flowVersions: table(),
    endpoints: table(),
    deliveries: table(),
    ingest: table(),
    positions: table(),
  };
}

function put<Row>(t: Table<Row>, key: string, row: Row): void {
  t.rows.set(key, row);
  t.dirty.add(key);
}

// ----------------------------------------------------------------------------- evolve: flow runs
type Data = Record<string, unknown>;
const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function evolveFlowRun(row: FlowRunRow | undefined, event: RecordedEvent): FlowRunRow {
  const d = event.data as Data;
  const base: FlowRunRow = row ?? {
    tenantId: event.tenantId,
    runId: String(d.runId),
    flowId: null,
    flowVersion: null,
    status: 'running',
    triggerEventId: null,
    startedAt: null,
    finishedAt: null,
    durationMs: null,
    stepsSucceeded: 0,
    stepsFailed: 0,
    retriesScheduled: 0,
    lastStepIndex: null,
    lastError: null,
    startedPosition: event.globalPosition,
    updatedPosition: event.globalPosition,
  };
  const r: FlowRunRow = { ...base, updatedPosition: event.globalPosition };
  switch (event.type) {
    case 'FlowRunStarted':
      r.flowId = str(d.flowId);
      r.flowVersion = num(d.flowVersion);
      r.triggerEventId = str(d.triggerEventId);
      r.startedAt = event.occurredAt.toISOString();
      r.startedPosition = event.globalPosition;
      return r;
    case 'StepSucceeded':
      r.stepsSucceeded++;
      r.lastStepIndex = num(d.stepIndex);
      if (r.status === 'retrying') r.status = 'running';
      return r;
    case 'StepFailed':
      r.stepsFailed++;
      r.lastStepIndex = num(d.stepIndex);
      r.lastError = str(d.error);
      return r;
    case 'StepRetryScheduled':
      r.retriesScheduled++;
      r.status = 'retrying';
      return r;
    case 'FlowRunCompleted':
      r.status = 'succeeded';
      r.durationMs = num(d.durationMs);
      r.finishedAt = event.occurredAt.toISOString();
      return r;
    case 'FlowRunFailed':
      r.status = 'failed';
      r.lastError = str(d.error) ?? r.lastError;
      r.finishedAt = event.occurredAt.toISOString();
      r.durationMs = r.startedAt ? event.occurredAt.getTime() - Date.parse(r.startedAt) : null;
      return r;
    case 'FlowRunDeadLettered':
      r.status = 'dead_lettered';
      r.lastError = str(d.reason) ?? r.lastError;
      r.finishedAt = event.occurredAt.toISOString();
      r.durationMs = r.startedAt ? event.occurredAt.getTime() - Date.parse(r.startedAt) : null;
      return r;
    default:
      return base;
  }
}

// ---------------------------------------------------------------------------- evolve: connectors
function newConnector(tenantId: string, connectorId: string, position: number): ConnectorRow {
  return {
    tenantId,
    connectorId,
    name: null,
    kind: null,
    status: 'active',
    successes: 0,
    failures: 0,
    consecutiveFailures: 0,
    lastError: null,
    lastSuccessAt: null,
    lastFailureAt: null,
    circuit: 'closed',
    updatedPosition: position,
  };
}

/** Lifecycle events of the connector itself. */
export function evolveConnector(row: ConnectorRow | undefined, event: RecordedEvent): ConnectorRow {
  const d = event.data as Data;
  const r: ConnectorRow = { ...(row ?? newConnector(event.tenantId, String(d.connectorId), event.globalPosition)) };
  r.updatedPosition = event.globalPosition;
  switch (event.type) {
    case 'ConnectorInstalled':
      r.name = str(d.name);
      r.kind = str(d.kind);
      r.status = 'active';
      return r;
    case 'ConnectorPaused':
      r.status = 'paused';
      if (typeof d.reason === 'string' && /circuit/i.test(d.reason)) r.circuit = 'open';
      return r;
    case 'ConnectorResumed':
      r.status = 'active';
      if (r.circuit === 'open') r.circuit = 'half_open';
      return r;
    case 'ConnectorRemoved':
      r.status = 'removed';
      return r;
    default:
      return r;
  }
}

/** The outcome of a flow step that called this connector. */
export function evolveConnectorOutcome(
  row: ConnectorRow | undefined,
  event: RecordedEvent,
  connectorId: string,
  outcome: 'success' | 'failure',
): ConnectorRow {
  const r: ConnectorRow = { ...(row ?? newConnector(event.tenantId, connectorId, event.globalPosition)) };
  r.updatedPosition = event.globalPosition;
  const at = event.occurredAt.toISOString();
  if (outcome === 'success') {
    r.successes++;
    r.consecutiveFailures = 0;
    r.lastSuccessAt = at;
    r.circuit = 'closed';
  } else {
    r.failures++;
    r.consecutiveFailures++;
    r.lastFailureAt = at;
    r.lastError = str((event.data as Data).error);
    // A failed probe of a half-open circuit opens it again, as the runners' breaker does.
    if (r.circuit === 'half_open' || r.consecutiveFailures >= CIRCUIT_OPEN_AFTER) r.circuit = 'open';
  }
  return r;
}

// --------------------------------------------------------------------------- evolve: flow versions
/** Finds the connector a step calls: `connectorId` on the step or on a nested destination object. */
export function stepConnectorId(step: unknown, depth = 0): string | null {
  if (typeof step !== 'object' || step === null || depth > 3) return null;
  const s = step as Data;
  if (typeof s.connectorId === 'string') return s.connectorId;
  for (const k of ['destination', 'connector', 'to', 'target', 'sink', 'action']) {
    const found = stepConnectorId(s[k], depth + 1);
    if (found) return found;
  }
  return null;
}

export function stepConnectorsOf(definition: unknown): (string | null)[] {
  const steps = typeof definition === 'object' && definition !== null ? (definition as Data).steps : undefined;
  return Array.isArray(steps) ? steps.map((s) => stepConnectorId(s)) : [];
}

export function evolveFlowVersion(
  row: FlowVersionRow | undefined,
  event: RecordedEvent,
  version: number,
): FlowVersionRow {
  const d = event.data as Data;
  const r: FlowVersionRow = {
    ...(row ?? {
      tenantId: event.tenantId,
      flowId: String(d.flowId),
      version,
      name: null,
      enabled: false,
      stepConnectors: [],
      updatedPosition: event.globalPosition,
    }),
  };
  r.updatedPosition = event.globalPosition;
  if (event.type === 'FlowDefined') {
    r.name = str(d.name);
    r.stepConnectors = stepConnectorsOf(d.definition);
  } else if (event.type === 'FlowVersionPublished') {
    r.stepConnectors = stepConnectorsOf(d.definition);
  }
  return r;
}

// ------------------------------------------------------------------------------- evolve: webhooks
export function evolveEndpoint(row: WebhookEndpointRow | undefined, event: RecordedEvent): WebhookEndpointRow {
  const d = event.data as Data;
  const r: WebhookEndpointRow = {
    ...(row ?? {
      tenantId: event.tenantId,
      webhookId: String(d.webhookId),
      url: null,
      eventTypes: [],
      active: true,
      pending: 0,
      succeeded: 0,
      failed: 0,
      deadLettered: 0,
      lastError: null,
      lastDeliveredAt: null,
      updatedPosition: event.globalPosition,
    }),
  };
  r.updatedPosition = event.globalPosition;
  switch (event.type) {
    case 'WebhookEndpointRegistered':
      r.url = str(d.url);
      r.eventTypes = Array.isArray(d.eventTypes) ? d.eventTypes.filter((t): t is string => typeof t === 'string') : [];
      r.active = true;
      return r;
    case 'WebhookEndpointUpdated':
      if (typeof d.url === 'string') r.url = d.url;
      if (Array.isArray(d.eventTypes)) r.eventTypes = d.eventTypes.filter((t): t is string => typeof t === 'string');
      return r;
    case 'WebhookEndpointRemoved':
      r.active = false;
      return r;
    default:
      return r;
  }
}

export function endpointWants(endpoint: WebhookEndpointRow, event: RecordedEvent): boolean {
  if (!endpoint.active || DELIVERY_OUTCOME_TYPES.has(event.type) || event.tenantId !== endpoint.tenantId) return false;
  return endpoint.eventTypes.includes(event.type) || endpoint.eventTypes.includes('*');
}

export function newDelivery(endpoint: WebhookEndpointRow, event: RecordedEvent): DeliveryRow {
  return {
    tenantId: event.tenantId,
    webhookId: endpoint.webhookId,
    eventId: event.eventId,
    deliveryId: null,
    eventType: event.type,
    status: 'pending',
    attempts: 0,
    lastHttpStatus: null,
    lastError: null,
    latencyMs: null,
    nextAttemptAt: null,
    createdPosition: event.globalPosition,
    updatedPosition: event.globalPosition,
    updatedAt: event.recordedAt.toISOString(),
  };
}

export function evolveDelivery(row: DeliveryRow | undefined, event: RecordedEvent): DeliveryRow {
  const d = event.data as Data;
  const r: DeliveryRow = {
    ...(row ?? {
      tenantId: event.tenantId,
      webhookId: String(d.webhookId),
      eventId: String(d.eventId),
      deliveryId: null,
      eventType: null,
      status: 'pending',
      attempts: 0,
      lastHttpStatus: null,
      lastError: null,
      latencyMs: null,
      nextAttemptAt: null,
      createdPosition: event.globalPosition,
      updatedPosition: event.globalPosition,
      updatedAt: event.recordedAt.toISOString(),
    }),
  };
  r.updatedPosition = event.globalPosition;
  r.updatedAt = event.recordedAt.toISOString();
  if (typeof d.deliveryId === 'string') r.deliveryId = d.deliveryId;
  switch (event.type) {
    case 'WebhookDeliverySucceeded':
      r.status = 'succeeded';
      r.attempts = Math.max(r.attempts, num(d.attempt) ?? r.attempts + 1);
      r.lastHttpStatus = num(d.status);
      r.latencyMs = num(d.latencyMs);
      r.nextAttemptAt = null;
      return r;
    case 'WebhookDeliveryFailed':
      r.status = 'failed';
      r.attempts = Math.max(r.attempts, num(d.attempt) ?? r.attempts + 1);
      r.lastHttpStatus = num(d.status);
      r.lastError = str(d.error);
      r.nextAttemptAt = str(d.nextAttemptAt);
      return r;
    case 'WebhookDeliveryDeadLettered':
      r.status = 'dead_lettered';
      r.attempts = Math.max(r.attempts, num(d.attempts) ?? r.attempts);
      r.lastError = str(d.reason) ?? r.lastError;
      r.nextAttemptAt = null;
      return r;
    case 'WebhookDeliveryRedriven':
      r.status = 'pending';
      r.nextAttemptAt = null;
      return r;
    default:
      return r;
  }
}

function countField(s: DeliveryStatus): 'pending' | 'succeeded' | 'failed' | 'deadLettered' {
  return s === 'dead_lettered' ? 'deadLettered' : s;
}

/** Moves one delivery between the per-endpoint counters. */
export function recount(
  endpoint: WebhookEndpointRow,
  from: DeliveryStatus | undefined,
  to: DeliveryStatus,
  delivery: DeliveryRow,
): WebhookEndpointRow {
  const r = { ...endpoint };
  if (from) r[countField(from)] = Math.max(0, r[countField(from)] - 1);
  r[countField(to)]++;
  if (to === 'succeeded') r.lastDeliveredAt = delivery.updatedAt;
  if (to === 'failed' || to === 'dead_lettered') r.lastError = delivery.lastError;
  r.updatedPosition = Math.max(r.updatedPosition, delivery.updatedPosition);
  return r;
}

// ------------------------------------------------------------------------------------ the fold
/**
 * Folds one event into the state. Returns false for a redelivery (at or below the tenant's
 * position), which changes nothing. Rows the event touches must already be in `state` when they
 * exist in the database (the projector loads them: see `dashboardKeys`).
 */
export function applyDashboardEvent(state: DashboardState, event: RecordedEvent): boolean {
  const tenant = event.tenantId;
  const seen = state.positions.rows.get(tenant) ?? 0;
  if (event.globalPosition <= seen) return false;
  put(state.positions, tenant, event.globalPosition);

  const d = event.data as Data;
  const ik = ingestKey(tenant, hourOf(event.recordedAt), event.type);
  const rate = state.ingest.rows.get(ik);
  put(state.ingest, ik, {
    tenantId: tenant,
    hour: hourOf(event.recordedAt),
    eventType: event.type,
    count: (rate?.count ?? 0) + 1,
  });

  switch (event.type) {
    case 'FlowRunStarted':
    case 'StepRetryScheduled':
    case 'FlowRunCompleted':
    case 'FlowRunFailed':
    case 'FlowRunDeadLettered': {
      const k = runKey(tenant, String(d.runId));
      put(state.runs, k, evolveFlowRun(state.runs.rows.get(k), event));
      break;
    }
    case 'StepSucceeded':
    case 'StepFailed': {
      const k = runKey(tenant, String(d.runId));
      const run = evolveFlowRun(state.runs.rows.get(k), event);
      put(state.runs, k, run);
      const connectorId = connectorOfStep(state, run, event);
      if (connectorId) {
        const ck = connectorKey(tenant, connectorId);
        const outcome = event.type === 'StepSucceeded' ? 'success' : 'failure';
        put(state.connectors, ck, evolveConnectorOutcome(state.connectors.rows.get(ck), event, connectorId, outcome));
      }
      break;
    }
    case 'ConnectorInstalled':
    case 'ConnectorCredentialsRotated':
    case 'ConnectorPaused':
    case 'ConnectorResumed':
    case 'ConnectorRemoved': {
      const k = connectorKey(tenant, String(d.connectorId));
      put(state.connectors, k, evolveConnector(state.connectors.rows.get(k), event));
      break;
    }
    case 'FlowDefined':
    case 'FlowVersionPublished': {
      const version = event.type === 'FlowDefined' ? 1 : (num(d.version) ?? 1);
      const k = flowVersionKey(tenant, String(d.flowId), version);
      put(state.flowVersions, k, evolveFlowVersion(state.flowVersions.rows.get(k), event, version));
      break;
    }
    case 'FlowEnabled':
    case 'FlowDisabled': {
      for (const [k, fv] of state.flowVersions.rows) {
        if (fv.tenantId === tenant && fv.flowId === d.flowId) {
          put(state.flowVersions, k, {
            ...fv,
            enabled: event.type === 'FlowEnabled',
            updatedPosition: event.globalPosition,
          });
        }
      }
      break;
    }
    case 'WebhookEndpointRegistered':
    case 'WebhookEndpointUpdated':
    case 'WebhookEndpointRemoved': {
      const k = endpointKey(tenant, String(d.webhookId));
      put(state.endpoints, k, evolveEndpoint(state.endpoints.rows.get(k), event));
      break;
    }
    case 'WebhookDeliverySucceeded':
    case 'WebhookDeliveryFailed':
    case 'WebhookDeliveryDeadLettered':
    case 'WebhookDeliveryRedriven': {
      const webhookId = String(d.webhookId);
      // A redrive names the delivery, not the event: find the delivery it names.
      const dk =
        typeof d.eventId === 'string'
          ? deliveryKey(tenant, webhookId, d.eventId)
          : findDeliveryById(state, tenant, webhookId, String(d.deliveryId));
      if (dk === undefined) break;
      const before = state.deliveries.rows.get(dk);
      const after = evolveDelivery(before, event);
      put(state.deliveries, dk, after);
      const ek = endpointKey(tenant, webhookId);
      const endpoint = state.endpoints.rows.get(ek);
      if (endpoint && before?.status !== after.status)
        put(state.endpoints, ek, recount(endpoint, before?.status, after.status, after));
      break;
    }
    default:
      break;
  }

  // Every event (whatever its type) may be owed to the tenant's webhook endpoints.
  for (const [ek, endpoint] of state.endpoints.rows) {
    if (endpoint.tenantId !== tenant || !endpointWants(endpoint, event)) continue;
    const dk = deliveryKey(tenant, endpoint.webhookId, event.eventId);
    if (state.deliveries.rows.has(dk)) continue;
    const delivery = newDelivery(endpoint, event);
    put(state.deliveries, dk, delivery);
    put(state.endpoints, ek, recount(state.endpoints.rows.get(ek)!, undefined, 'pending', delivery));
  }
  return true;
}

function findDeliveryById(
  state: DashboardState,
  tenantId: string,
  webhookId: string,
  deliveryId: string,
): string | undefined {
  for (const [k, r] of state.deliveries.rows) {
    if (r.tenantId === tenantId && r.webhookId === webhookId && r.deliveryId === deliveryId) return k;
  }
  return undefined;
}

function connectorOfStep(state: DashboardState, run: FlowRunRow, event: RecordedEvent): string | null {
  const d = event.data as Data;
  const fromSummary = stepConnectorId(d.summary);
  if (fromSummary) return fromSummary;
  if (typeof d.connectorId === 'string') return d.connectorId;
  if (!run.flowId || run.flowVersion === null) return null;
  const fv = state.flowVersions.rows.get(flowVersionKey(run.tenantId, run.flowId, run.flowVersion));
  const idx = num(d.stepIndex);
  return fv && idx !== null ? (fv.stepConnectors[idx] ?? null) : null;
}

/** The keyed rows a batch can touch that are not loaded per tenant (runs, deliveries, ingest buckets). */
export function dashboardKeys(events: RecordedEvent[]): {
  tenants: string[];
  runs: [string, string][];
  deliveries: [string, string, string][];
  /** Deliveries named by their deliveryId (redrives). */
  deliveriesById: [string, string, string][];
  ingest: [string, string, string][];
} {
  const tenants = new Set<string>();
  const runs = new Map<string, [string, string]>();
  const deliveries = new Map<string, [string, string, string]>();
  const deliveriesById = new Map<string, [string, string, string]>();
  const ingest = new Map<string, [string, string, string]>();
  for (const e of events) {
    tenants.add(e.tenantId);
    const d = e.data as Data;
    if (RUN_TYPES.has(e.type) && typeof d.runId === 'string')
      runs.set(runKey(e.tenantId, d.runId), [e.tenantId, d.runId]);
    if (DELIVERY_OUTCOME_TYPES.has(e.type) && typeof d.webhookId === 'string') {
      if (typeof d.eventId === 'string') {
        deliveries.set(deliveryKey(e.tenantId, d.webhookId, d.eventId), [e.tenantId, d.webhookId, d.eventId]);
      } else if (typeof d.deliveryId === 'string') {
        deliveriesById.set(deliveryKey(e.tenantId, d.webhookId, d.deliveryId), [e.tenantId, d.webhookId, d.deliveryId]);
      }
    }
    const hour = hourOf(e.recordedAt);
    ingest.set(ingestKey(e.tenantId, hour, e.type), [e.tenantId, hour, e.type]);
  }
  return {
    tenants: [...tenants],
    runs: [...runs.values()],
    deliveries: [...deliveries.values()],
    deliveriesById: [...deliveriesById.values()],
    ingest: [...ingest.values()],
  };
}
