import type pg from 'pg';
import type { RecordedEvent } from '@keel/shared-events';
import type { TableNames } from '../db/schema.ts';
import {
  applyDashboardEvent,
  connectorKey,
  dashboardKeys,
  deliveryKey,
  emptyDashboardState,
  endpointKey,
  flowVersionKey,
  ingestKey,
  runKey,
} from './model.ts';
import type {
  ConnectorRow,
  DashboardState,
  DeliveryRow,
  FlowRunRow,
  FlowVersionRow,
  IngestRateRow,
  Table,
  WebhookEndpointRow,
} from './model.ts';

/**
 * The dashboard projector's reads and writes around the pure fold: load every row a batch can
 * touch, fold the batch, write back the rows that changed, in the caller's transaction.
 */
type Row = Record<string, unknown>;
const iso = (v: unknown): string | null =>
  v instanceof Date ? v.toISOString() : v === null || v === undefined ? null : String(v);
const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export const rowMappers = {
  run: (r: Row): FlowRunRow => ({
    tenantId: String(r.tenant_id),
    runId: String(r.run_id),
    flowId: (r.flow_id as string | null) ?? null,
    flowVersion: n(r.flow_version),
    status: r.status as FlowRunRow['status'],
    triggerEventId: (r.trigger_event_id as string | null) ?? null,
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    durationMs: n(r.duration_ms),
    stepsSucceeded: Number(r.steps_succeeded),
    stepsFailed: Number(r.steps_failed),
    retriesScheduled: Number(r.retries_scheduled),
    lastStepIndex: n(r.last_step_index),
    lastError: (r.last_error as string | null) ?? null,
    startedPosition: Number(r.started_position),
    updatedPosition: Number(r.updated_position),
  }),
  connector: (r: Row): ConnectorRow => ({
    tenantId: String(r.tenant_id),
    connectorId: String(r.connector_id),
    name: (r.name as string | null) ?? null,
    kind: (r.kind as string | null) ?? null,
    status: r.status as ConnectorRow['status'],
    successes: Number(r.successes),
    failures: Number(r.failures),
    consecutiveFailures: Number(r.consecutive_failures),
    lastError: (r.last_error as string | null) ?? null,
    lastSuccessAt: iso(r.last_success_at),
    lastFailureAt: iso(r.last_failure_at),
    circuit: r.circuit as ConnectorRow['circuit'],
    updatedPosition: Number(r.updated_position),
  }),
  flowVersion: (r: Row): FlowVersionRow => ({
    tenantId: String(r.tenant_id),
    flowId: String(r.flow_id),
    version: Number(r.version),
    name: (r.name as string | null) ?? null,
    enabled: Boolean(r.enabled),
    stepConnectors: r.step_connectors as (string | null)[],
    updatedPosition: Number(r.updated_position),
  }),
  endpoint: (r: Row): WebhookEndpointRow => ({
    tenantId: String(r.tenant_id),
    webhookId: String(r.webhook_id),
    url: (r.url as string | null) ?? null,
    eventTypes: r.event_types as string[],
    active: Boolean(r.active),
    pending: Number(r.pending),
    succeeded: Number(r.succeeded),
    failed: Number(r.failed),
    deadLettered: Number(r.dead_lettered),
    lastError: (r.last_error as string | null) ?? null,
    lastDeliveredAt: iso(r.last_delivered_at),
    updatedPosition: Number(r.updated_position),
  }),
  delivery: (r: Row): DeliveryRow => ({
    tenantId: String(r.tenant_id),
    webhookId: String(r.webhook_id),
    eventId: String(r.event_id),
    deliveryId: (r.delivery_id as string | null) ?? null,
    eventType: (r.event_type as string | null) ?? null,
    status: r.status as DeliveryRow['status'],
    attempts: Number(r.attempts),
    lastHttpStatus: n(r.last_http_status),
    lastError: (r.last_error as string | null) ?? null,
    latencyMs: n(r.latency_ms),
    nextAttemptAt: iso(r.next_attempt_at),
    createdPosition: Number(r.created_position),
    updatedPosition: Number(r.updated_position),
    updatedAt: iso(r.updated_at)!,
  }),
  ingest: (r: Row): IngestRateRow => ({
    tenantId: String(r.tenant_id),
    hour: iso(r.hour)!,
    eventType: String(r.event_type),
    count: Number(r.count),
  }),
};

function fill<T>(t: Table<T>, rows: Row[], map: (r: Row) => T, key: (row: T) => string): void {
  for (const r of rows) {
    const row = map(r);
    t.rows.set(key(row), row);
  }
}

/** Loads every existing row the batch can touch into a fresh state. */
export async function loadDashboardState(
  client: pg.ClientBase,
  tables: TableNames,
  events: RecordedEvent[],
): Promise<DashboardState> {
  const state = emptyDashboardState();
  const keys = dashboardKeys(events);
  const tenants = keys.tenants;
  // One client runs one query at a time: chain them (in order: positions first, it takes the lock).
  let queue: Promise<unknown> = Promise.resolve();
  const q = (sql: string, params: unknown[]): Promise<Row[]> => {
    const next = queue.then(() => client.query(sql, params)).then((r) => r.rows as Row[]);
    queue = next.catch(() => undefined);
    return next;
  };
  const [positions, connectors, flowVersions, endpoints, runs, deliveries, deliveriesById, ingest] = await Promise.all([
    q(`select tenant_id, position from ${tables.dash_positions} where tenant_id = any($1::text[]) for update`, [
      tenants,
    ]),
    // Per-tenant configuration is small: load all of it for the batch's tenants.
    q(`select * from ${tables.dash_connectors} where tenant_id = any($1::text[])`, [tenants]),
    q(`select * from ${tables.dash_flow_versions} where tenant_id = any($1::text[])`, [tenants]),
    q(`select * from ${tables.dash_webhook_endpoints} where tenant_id = any($1::text[])`, [tenants]),
    keys.runs.length
      ? q(
          `select r.* from ${tables.dash_flow_runs} r join unnest($1::text[], $2::text[]) as k(t, id) on r.tenant_id = k.t and r.run_id = k.id`,
          [keys.runs.map((k) => k[0]), keys.runs.map((k) => k[1])],
        )
      : [],
    keys.deliveries.length
      ? q(
          `select d.* from ${tables.dash_webhook_deliveries} d join unnest($1::text[], $2::text[], $3::text[]) as k(t, w, e)
           on d.tenant_id = k.t and d.webhook_id = k.w and d.event_id = k.e`,
          [keys.deliveries.map((k) => k[0]), keys.deliveries.map((k) => k[1]), keys.deliveries.map((k) => k[2])],
        )
      : [],
    keys.deliveriesById.length
      ? q(
          `select d.* from ${tables.dash_webhook_deliveries} d join unnest($1::text[], $2::text[], $3::text[]) as k(t, w, i)
           on d.tenant_id = k.t and d.webhook_id = k.w and d.delivery_id = k.i`,
          [
            keys.deliveriesById.map((k) => k[0]),
            keys.deliveriesById.map((k) => k[1]),
            keys.deliveriesById.map((k) => k[2]),
          ],
        )
      : [],
    q(
      `select i.* from ${tables.dash_ingest_rates} i join unnest($1::text[], $2::timestamptz[], $3::text[]) as k(t, h, ty)
       on i.tenant_id = k.t and i.hour = k.h and i.event_type = k.ty`,
      [keys.ingest.map((k) => k[0]), keys.ingest.map((k) => k[1]), keys.ingest.map((k) => k[2])],
    ),
  ]);
  for (const r of positions) state.positions.rows.set(String(r.tenant_id), Number(r.position));
  fill(state.connectors, connectors, rowMappers.connector, (x) => connectorKey(x.tenantId, x.connectorId));
  fill(state.flowVersions, flowVersions, rowMappers.flowVersion, (x) =>
    flowVersionKey(x.tenantId, x.flowId, x.version),
  );
  fill(state.endpoints, endpoints, rowMappers.endpoint, (x) => endpointKey(x.tenantId, x.webhookId));
  fill(state.runs, runs, rowMappers.run, (x) => runKey(x.tenantId, x.runId));
  fill(state.deliveries, [...deliveries, ...deliveriesById], rowMappers.delivery, (x) =>
    deliveryKey(x.tenantId, x.webhookId, x.eventId),
  );
  fill(state.ingest, ingest, rowMappers.ingest, (x) => ingestKey(x.tenantId, x.hour, x.eventType));
  return state;
}

function dirtyRows<T>(t: Table<T>): T[] {
  return [...t.dirty].map((k) => t.rows.get(k)!);
}

/** Upserts changed rows through one JSON parameter per table (`jsonb_to_recordset`). */
async function upsert(
  client: pg.ClientBase,
  table: string,
  rows: object[],
  columns: [string, string, string][],
  key: string[],
): Promise<void> {
  if (!rows.length) return;
  // columns: [sql column, sql type, property name]
  const payload = rows.map((r) => {
    const o: Record<string, unknown> = {};
    for (const [col, , prop] of columns) o[col] = (r as Record<string, unknown>)[prop];
    return o;
  });
  const cols = columns.map(([c]) => c).join(', ');
  const defs = columns.map(([c, t]) => `${c} ${t}`).join(', ');
  const updates = columns
    .filter(([c]) => !key.includes(c))
    .map(([c]) => `${c} = excluded.${c}`)
    .join(', ');
  await client.query(
    `insert into ${table} (${cols}) select ${cols} from jsonb_to_recordset($1::jsonb) as x(${defs})
     on conflict (${key.join(', ')}) do update set ${updates}`,
    [JSON.stringify(payload)],
  );
}

export async function saveDashboardState(
  client: pg.ClientBase,
  tables: TableNames,
  state: DashboardState,
): Promise<void> {
  await upsert(
    client,
    tables.dash_flow_runs!,
    dirtyRows(state.runs),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['run_id', 'text', 'runId'],
      ['flow_id', 'text', 'flowId'],
      ['flow_version', 'integer', 'flowVersion'],
      ['status', 'text', 'status'],
      ['trigger_event_id', 'text', 'triggerEventId'],
      ['started_at', 'timestamptz', 'startedAt'],
      ['finished_at', 'timestamptz', 'finishedAt'],
      ['duration_ms', 'bigint', 'durationMs'],
      ['steps_succeeded', 'integer', 'stepsSucceeded'],
      ['steps_failed', 'integer', 'stepsFailed'],
      ['retries_scheduled', 'integer', 'retriesScheduled'],
      ['last_step_index', 'integer', 'lastStepIndex'],
      ['last_error', 'text', 'lastError'],
      ['started_position', 'bigint', 'startedPosition'],
      ['updated_position', 'bigint', 'updatedPosition'],
    ],
    ['tenant_id', 'run_id'],
  );
  await upsert(
    client,
    tables.dash_connectors!,
    dirtyRows(state.connectors),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['connector_id', 'text', 'connectorId'],
      ['name', 'text', 'name'],
      ['kind', 'text', 'kind'],
      ['status', 'text', 'status'],
      ['successes', 'bigint', 'successes'],
      ['failures', 'bigint', 'failures'],
      ['consecutive_failures', 'integer', 'consecutiveFailures'],
      ['last_error', 'text', 'lastError'],
      ['last_success_at', 'timestamptz', 'lastSuccessAt'],
      ['last_failure_at', 'timestamptz', 'lastFailureAt'],
      ['circuit', 'text', 'circuit'],
      ['updated_position', 'bigint', 'updatedPosition'],
    ],
    ['tenant_id', 'connector_id'],
  );
  await upsert(
    client,
    tables.dash_flow_versions!,
    dirtyRows(state.flowVersions),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['flow_id', 'text', 'flowId'],
      ['version', 'integer', 'version'],
      ['name', 'text', 'name'],
      ['enabled', 'boolean', 'enabled'],
      ['step_connectors', 'jsonb', 'stepConnectors'],
      ['updated_position', 'bigint', 'updatedPosition'],
    ],
    ['tenant_id', 'flow_id', 'version'],
  );
  await upsert(
    client,
    tables.dash_webhook_endpoints!,
    dirtyRows(state.endpoints),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['webhook_id', 'text', 'webhookId'],
      ['url', 'text', 'url'],
      ['event_types', 'jsonb', 'eventTypes'],
      ['active', 'boolean', 'active'],
      ['pending', 'bigint', 'pending'],
      ['succeeded', 'bigint', 'succeeded'],
      ['failed', 'bigint', 'failed'],
      ['dead_lettered', 'bigint', 'deadLettered'],
      ['last_error', 'text', 'lastError'],
      ['last_delivered_at', 'timestamptz', 'lastDeliveredAt'],
      ['updated_position', 'bigint', 'updatedPosition'],
    ],
    ['tenant_id', 'webhook_id'],
  );
  await upsert(
    client,
    tables.dash_webhook_deliveries!,
    dirtyRows(state.deliveries),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['webhook_id', 'text', 'webhookId'],
      ['event_id', 'text', 'eventId'],
      ['delivery_id', 'text', 'deliveryId'],
      ['event_type', 'text', 'eventType'],
      ['status', 'text', 'status'],
      ['attempts', 'integer', 'attempts'],
      ['last_http_status', 'integer', 'lastHttpStatus'],
      ['last_error', 'text', 'lastError'],
      ['latency_ms', 'bigint', 'latencyMs'],
      ['next_attempt_at', 'timestamptz', 'nextAttemptAt'],
      ['created_position', 'bigint', 'createdPosition'],
      ['updated_position', 'bigint', 'updatedPosition'],
      ['updated_at', 'timestamptz', 'updatedAt'],
    ],
    ['tenant_id', 'webhook_id', 'event_id'],
  );
  await upsert(
    client,
    tables.dash_ingest_rates!,
    dirtyRows(state.ingest),
    [
      ['tenant_id', 'text', 'tenantId'],
      ['hour', 'timestamptz', 'hour'],
      ['event_type', 'text', 'eventType'],
      ['count', 'bigint', 'count'],
    ],
    ['tenant_id', 'hour', 'event_type'],
  );
  const positions = [...state.positions.dirty].map((t) => ({ tenantId: t, position: state.positions.rows.get(t)! }));
  await upsert(
    client,
    tables.dash_positions!,
    positions,
    [
      ['tenant_id', 'text', 'tenantId'],
      ['position', 'bigint', 'position'],
    ],
    ['tenant_id'],
  );
}

export interface DashboardApplyResult {
  applied: number;
  lastPosition: number;
}

export async function applyDashboardBatch(
  client: pg.ClientBase,
  tables: TableNames,
  events: RecordedEvent[],
): Promise<DashboardApplyResult> {
  if (!events.length) return { applied: 0, lastPosition: 0 };
  const state = await loadDashboardState(client, tables, events);
  let applied = 0;
  let lastPosition = 0;
  for (const e of events) {
    if (applyDashboardEvent(state, e)) applied++;
    lastPosition = Math.max(lastPosition, e.globalPosition);
  }
  await saveDashboardState(client, tables, state);
  return { applied, lastPosition };
}
