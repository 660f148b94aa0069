import type pg from 'pg';
import { ValidationError } from '@keel/shared-events';
import { decodeCursor, encodeCursor, filterFingerprint } from '../read/cursor.ts';
import {
  ID_RE,
  TYPE_RE,
  limit,
  matching,
  nonNegativeInt,
  oneOfValues,
  rejectUnknown,
  single,
  timeRange,
} from '../read/params.ts';
import type { Query } from '../read/params.ts';
import { withTenant } from '../read/tenant-tx.ts';
import { deliveryStatuses } from './model.ts';
import type { DeliveryStatus, RunStatus } from './model.ts';
import { rowMappers } from './store.ts';

/**
 * Dashboard reads: query-string parsing (pure) and the SQL behind each route, always as the RLS
 * reader with the tenant set, and always filtered by tenant.
 */
export const PAGE_DEFAULT = 50;
export const PAGE_MAX = 500;
const runStatuses: readonly RunStatus[] = ['running', 'retrying', 'succeeded', 'failed', 'dead_lettered'];

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

// ----------------------------------------------------------------------------------- flow runs
export interface FlowRunsQuery {
  status?: RunStatus;
  flowId?: string;
  limit: number;
  before?: number;
  minPosition?: number;
  fingerprint: string;
}

export function parseFlowRunsQuery(q: Query): FlowRunsQuery {
  rejectUnknown(q, ['status', 'flowId', 'limit', 'cursor', 'minPosition']);
  const filters = { status: oneOfValues(q, 'status', runStatuses), flowId: matching(q, 'flowId', ID_RE, 'a flow id') };
  const fingerprint = filterFingerprint('flow-runs', filters);
  const cursor = single(q, 'cursor');
  return {
    ...filters,
    limit: limit(q, PAGE_DEFAULT, PAGE_MAX),
    before: cursor === undefined ? undefined : (decodeCursor(cursor, fingerprint, ['int'])[0] as number),
    minPosition: nonNegativeInt(q, 'minPosition'),
    fingerprint,
  };
}

export async function queryFlowRuns(pool: pg.Pool, tenantId: string, q: FlowRunsQuery) {
  const params: unknown[] = [tenantId];
  const where = ['tenant_id = $1'];
  const add = (sql: (p: string) => string, v: unknown) => {
    params.push(v);
    where.push(sql(`$${params.length}`));
  };
  if (q.status) add((p) => `status = ${p}`, q.status);
  if (q.flowId) add((p) => `flow_id = ${p}`, q.flowId);
  if (q.before !== undefined) add((p) => `started_position < ${p}`, q.before);
  params.push(q.limit + 1);
  const r = await withTenant(pool, tenantId, (c) =>
    c.query(
      `select * from dash_flow_runs where ${where.join(' and ')} order by started_position desc limit $${params.length}`,
      params,
    ),
  );
  const rows = r.rows.map(rowMappers.run);
  const more = rows.length > q.limit;
  const items = (more ? rows.slice(0, q.limit) : rows).map(({ tenantId: _t, ...rest }) => rest);
  return { items, nextCursor: more ? encodeCursor([items[items.length - 1]!.startedPosition], q.fingerprint) : null };
}

// ---------------------------------------------------------------------------------- connectors
export async function queryConnectors(pool: pg.Pool, tenantId: string) {
  const r = await withTenant(pool, tenantId, (c) =>
    c.query('select * from dash_connectors where tenant_id = $1 order by connector_id', [tenantId]),
  );
  return { items: r.rows.map(rowMappers.connector).map(({ tenantId: _t, ...rest }) => rest) };
}

// ------------------------------------------------------------------------------------ webhooks
export async function queryWebhooks(pool: pg.Pool, tenantId: string) {
  const r = await withTenant(pool, tenantId, (c) =>
    c.query('select * from dash_webhook_endpoints where tenant_id = $1 order by webhook_id', [tenantId]),
  );
  return { items: r.rows.map(rowMappers.endpoint).map(({ tenantId: _t, ...rest }) => rest) };
}

export interface DeliveriesQuery {
  status?: DeliveryStatus;
  webhookId?: string;
  limit: number;
  before?: [number, string];
  minPosition?: number;
  fingerprint: string;
}

export function parseDeliveriesQuery(q: Query): DeliveriesQuery {
  rejectUnknown(q, ['status', 'webhookId', 'limit', 'cursor', 'minPosition']);
  const filters = {
    status: oneOfValues(q, 'status', deliveryStatuses),
    webhookId: matching(q, 'webhookId', ID_RE, 'a webhook id'),
  };
  const fingerprint = filterFingerprint('deliveries', filters);
  const cursor = single(q, 'cursor');
  return {
    ...filters,
    limit: limit(q, PAGE_DEFAULT, PAGE_MAX),
    before:
      cursor === undefined ? undefined : (decodeCursor(cursor, fingerprint, ['int', 'string']) as [number, string]),
    minPosition: nonNegativeInt(q, 'minPosition'),
    fingerprint,
  };
}

export async function queryDeliveries(pool: pg.Pool, tenantId: string, q: DeliveriesQuery) {
  const params: unknown[] = [tenantId];
  const where = ['tenant_id = $1'];
  const add = (sql: (p: string) => string, v: unknown) => {
    params.push(v);
    where.push(sql(`$${params.length}`));
  };
  if (q.status) add((p) => `status = ${p}`, q.status);
  if (q.webhookId) add((p) => `webhook_id = ${p}`, q.webhookId);
  if (q.before) {
    params.push(q.before[0], q.before[1]);
    where.push(`(created_position, webhook_id) < ($${params.length - 1}, $${params.length})`);
  }
  params.push(q.limit + 1);
  const r = await withTenant(pool, tenantId, (c) =>
    c.query(
      `select * from dash_webhook_deliveries where ${where.join(' and ')}
       order by created_position desc, webhook_id desc limit $${params.length}`,
      params,
    ),
  );
  const rows = r.rows.map(rowMappers.delivery);
  const more = rows.length > q.limit;
  const items = (more ? rows.slice(0, q.limit) : rows).map(({ tenantId: _t, ...rest }) => rest);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: more && last ? encodeCursor([last.createdPosition, last.webhookId], q.fingerprint) : null,
  };
}

// -------------------------------------------------------------------------------- ingest rates
export interface IngestRatesQuery {
  from: Date;
  to: Date;
  types?: string[];
  minPosition?: number;
}

const HOUR = 3_600_000;
export const INGEST_MAX_HOURS = 24 * 93;

export function parseIngestRatesQuery(
  q: Query,
  isKnownType: (t: string) => boolean,
  now = new Date(),
): IngestRatesQuery {
  rejectUnknown(q, ['from', 'to', 'type', 'minPosition']);
  const range = timeRange(q);
  const to = range.to ?? new Date(Math.floor(now.getTime() / HOUR) * HOUR + HOUR);
  const from = range.from ?? new Date(to.getTime() - 24 * HOUR);
  if (from.getTime() > to.getTime()) throw new ValidationError('from must not be after to', 'from');
  if (to.getTime() - from.getTime() > INGEST_MAX_HOURS * HOUR) {
    throw new ValidationError(`the range may span at most ${INGEST_MAX_HOURS} hours`, 'from');
  }
  const type = single(q, 'type');
  let types: string[] | undefined;
  if (type !== undefined) {
    types = [...new Set(type.split(','))];
    for (const t of types)
      if (!TYPE_RE.test(t) || !isKnownType(t))
        throw new ValidationError(`type "${t.slice(0, 100)}" is not a known event type`, 'type');
  }
  return { from, to, types, minPosition: nonNegativeInt(q, 'minPosition') };
}

export async function queryIngestRates(pool: pg.Pool, tenantId: string, q: IngestRatesQuery) {
  const params: unknown[] = [tenantId, q.from, q.to];
  let typeClause = '';
  if (q.types) {
    params.push(q.types);
    typeClause = ' and event_type = any($4::text[])';
  }
  const r = await withTenant(pool, tenantId, (c) =>
    c.query(
      `select hour, event_type, count from dash_ingest_rates
        where tenant_id = $1 and hour >= date_trunc('hour', $2::timestamptz) and hour < $3${typeClause}
        order by hour, event_type`,
      params,
    ),
  );
  const items = r.rows.map((x) => ({
    hour: (x.hour as Date).toISOString(),
    eventType: x.event_type as string,
    count: Number(x.count),
  }));
  const totals: Record<string, number> = {};
  for (const i of items) totals[i.eventType] = (totals[i.eventType] ?? 0) + i.count;
  return { from: q.from.toISOString(), to: q.to.toISOString(), items, totals };
}

// ------------------------------------------------------------------------------------ overview
export async function queryOverview(pool: pg.Pool, tenantId: string, now = new Date()) {
  return withTenant(pool, tenantId, async (c) => {
    const runs = await c.query(
      'select status, count(*)::bigint as n from dash_flow_runs where tenant_id = $1 group by status',
      [tenantId],
    );
    const connectors = await c.query(
      'select circuit, status, count(*)::bigint as n from dash_connectors where tenant_id = $1 group by circuit, status',
      [tenantId],
    );
    const deliveries = await c.query(
      `select coalesce(sum(pending), 0)::bigint as pending, coalesce(sum(succeeded), 0)::bigint as succeeded,
              coalesce(sum(failed), 0)::bigint as failed, coalesce(sum(dead_lettered), 0)::bigint as dead_lettered
         from dash_webhook_endpoints where tenant_id = $1`,
      [tenantId],
    );
    const ingest = await c.query(
      `select coalesce(sum(count) filter (where hour >= $2), 0)::bigint as last_hour, coalesce(sum(count), 0)::bigint as last_24h
         from dash_ingest_rates where tenant_id = $1 and hour >= $3`,
      [
        tenantId,
        new Date(Math.floor(now.getTime() / HOUR) * HOUR),
        new Date(Math.floor(now.getTime() / HOUR) * HOUR - 23 * HOUR),
      ],
    );
    const byStatus = Object.fromEntries(runStatuses.map((s) => [s, 0])) as Record<RunStatus, number>;
    for (const r of runs.rows) byStatus[r.status as RunStatus] = Number(r.n);
    const circuits = { closed: 0, open: 0, half_open: 0 } as Record<string, number>;
    const statuses = { active: 0, paused: 0, removed: 0 } as Record<string, number>;
    for (const r of connectors.rows) {
      circuits[r.circuit as string] = (circuits[r.circuit as string] ?? 0) + Number(r.n);
      statuses[r.status as string] = (statuses[r.status as string] ?? 0) + Number(r.n);
    }
    const d = deliveries.rows[0]!;
    const i = ingest.rows[0]!;
    return {
      flowRuns: byStatus,
      connectors: { byCircuit: circuits, byStatus: statuses },
      deliveries: {
        pending: Number(d.pending),
        succeeded: Number(d.succeeded),
        failed: Number(d.failed),
        deadLettered: Number(d.dead_lettered),
      },
      events: { lastHour: Number(i.last_hour), last24h: Number(i.last_24h) },
    };
  });
}
