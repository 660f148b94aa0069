import type pg from 'pg';
import type { ActorKind } from '@keel/shared-events';
import { withTenant } from '../read/tenant-tx.ts';
import type { AuditFilters } from './filters.ts';
import type { AuditRow } from './row.ts';

/**
 * Audit reads. Every query runs through `withTenant` (RLS as the second wall) AND filters by
 * tenant itself (the first wall, and what lets the planner use the (tenant_id, ...) indexes).
 */
export const AUDIT_COLUMNS = `tenant_id, global_position, chain_seq, stream_id, stream_position, event_id, type, schema_version,
  actor_kind, actor_id, subject, occurred_at, recorded_at, correlation_id, causation_id, payload::text as payload, hash`;

export function mapAuditRow(r: Record<string, unknown>): AuditRow {
  return {
    tenantId: r.tenant_id as string,
    globalPosition: Number(r.global_position),
    chainSeq: Number(r.chain_seq),
    streamId: r.stream_id as string,
    streamPosition: Number(r.stream_position),
    eventId: r.event_id as string,
    type: r.type as string,
    schemaVersion: Number(r.schema_version),
    actorKind: r.actor_kind as ActorKind,
    actorId: r.actor_id as string,
    subject: (r.subject as string | null) ?? null,
    occurredAt: r.occurred_at as Date,
    recordedAt: r.recorded_at as Date,
    correlationId: (r.correlation_id as string | null) ?? null,
    causationId: (r.causation_id as string | null) ?? null,
    payload: r.payload as string,
    hash: r.hash as Buffer,
  };
}

/** The WHERE clause of a filtered audit query (parameters from $1 = tenant). */
export function auditWhere(tenantId: string, filters: AuditFilters, before?: number, table = 'audit_events'): { sql: string; params: unknown[] } {
  const params: unknown[] = [tenantId];
  const where = [`${table}.tenant_id = $1`];
  const add = (clause: (p: string) => string, value: unknown) => {
    params.push(value);
    where.push(clause(`$${params.length}`));
  };
  if (before !== undefined) add((p) => `global_position < ${p}`, before);
  if (filters.from) add((p) => `recorded_at >= ${p}`, filters.from);
  if (filters.to) add((p) => `recorded_at < ${p}`, filters.to);
  if (filters.actor) {
    add((p) => `actor_id = ${p}`, filters.actor.id);
    if (filters.actor.kind) add((p) => `actor_kind = ${p}`, filters.actor.kind);
  }
  if (filters.types) {
    if (filters.types.length === 1) add((p) => `type = ${p}`, filters.types[0]);
    else add((p) => `type = any(${p}::text[])`, filters.types);
  }
  if (filters.streamId) add((p) => `stream_id = ${p}`, filters.streamId);
  if (filters.correlationId) add((p) => `correlation_id = ${p}`, filters.correlationId);
  return { sql: where.join(' and '), params };
}

export async function queryAuditPage(
  pool: pg.Pool,
  tenantId: string,
  filters: AuditFilters,
  limit: number,
  before?: number,
): Promise<{ rows: AuditRow[]; hasMore: boolean }> {
  const { sql, params } = auditWhere(tenantId, filters, before);
  params.push(limit + 1);
  const res = await withTenant(pool, tenantId, (c) =>
    c.query(`select ${AUDIT_COLUMNS} from audit_events where ${sql} order by global_position desc limit $${params.length}`, params),
  );
  const rows = res.rows.map(mapAuditRow);
  const hasMore = rows.length > limit;
  return { rows: hasMore ? rows.slice(0, limit) : rows, hasMore };
}

/**
 * Every matching row, newest first, in chunks: each chunk is its own short transaction (keyset
 * from the last position), so memory stays flat and no transaction stays open for the whole
 * export. Rows projected after the export began are left out (the first chunk fixes the upper bound).
 */
export async function* streamAuditRows(
  pool: pg.Pool,
  tenantId: string,
  filters: AuditFilters,
  chunkSize = 5000,
): AsyncGenerator<AuditRow[]> {
  let before: number | undefined;
  for (;;) {
    const { rows, hasMore } = await queryAuditPage(pool, tenantId, filters, chunkSize, before);
    if (rows.length) yield rows;
    if (!hasMore) return;
    before = rows[rows.length - 1]!.globalPosition;
  }
}
