import type pg from 'pg';
import type { ActorKind } from '@keel/shared-events';
import { withTenant } from '../read/tenant-tx.ts';
import { auditOrder } from './filters.ts';
import type { AuditFilters, AuditKey, ExportFormat } from './filters.ts';
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

/** WHERE and ORDER BY of a filtered audit query, in page order, starting after `before` ($1 = tenant). */
export function auditQueryParts(
  tenantId: string,
  filters: AuditFilters,
  before?: AuditKey,
): { where: string; orderBy: string; params: unknown[] } {
  const params: unknown[] = [tenantId];
  const where = ['tenant_id = $1'];
  const add = (clause: (p: string) => string, value: unknown) => {
    params.push(value);
    where.push(clause(`$${params.length}`));
  };
  const byTime = auditOrder(filters) === 'time';
  if (before) {
    if (byTime) {
      params.push(new Date(before.recordedAt ?? 0), before.position);
      where.push(`(recorded_at, global_position) < ($${params.length - 1}, $${params.length})`);
    } else add((p) => `global_position < ${p}`, before.position);
  }
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
  return {
    where: where.join(' and '),
    orderBy: byTime ? 'recorded_at desc, global_position desc' : 'global_position desc',
    params,
  };
}

export function keyOf(row: { globalPosition: number; recordedAt: Date }, filters: AuditFilters): AuditKey {
  return auditOrder(filters) === 'time'
    ? { position: row.globalPosition, recordedAt: row.recordedAt.getTime() }
    : { position: row.globalPosition };
}

/** The SQL of one page (one row more than `limit`, to know whether there is a next page). */
export function auditPageSql(
  tenantId: string,
  filters: AuditFilters,
  limit: number,
  before?: AuditKey,
): { text: string; params: unknown[] } {
  const { where, orderBy, params } = auditQueryParts(tenantId, filters, before);
  params.push(limit + 1);
  return {
    text: `select ${AUDIT_COLUMNS} from audit_events where ${where} order by ${orderBy} limit $${params.length}`,
    params,
  };
}

export async function queryAuditPage(
  pool: pg.Pool,
  tenantId: string,
  filters: AuditFilters,
  limit: number,
  before?: AuditKey,
): Promise<{ rows: AuditRow[]; next?: AuditKey }> {
  const { text, params } = auditPageSql(tenantId, filters, limit, before);
  const res = await withTenant(pool, tenantId, (c) => c.query(text, params));
  const rows = res.rows.map(mapAuditRow);
  if (rows.length <= limit) return { rows };
  const page = rows.slice(0, limit);
  return { rows: page, next: keyOf(page[page.length - 1]!, filters) };
}

// ------------------------------------------------------------------------------------ export
/*
 * Export lines are formatted by PostgreSQL: the same text as row.ts toNdjsonLine / toCsvLine
 * (a test holds them equal), at about twice the rate of parsing the rows in Node and formatting
 * them again, and the database works on one core while this process writes on the other.
 */
const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;
const iso = (col: string) => `to_char(${col} at time zone 'UTC', ${ISO})`;
const jstr = (col: string) => `coalesce(to_json(${col})::text, 'null')`;

const NDJSON_LINE = `'{"position":' || global_position || ',"chainSeq":' || chain_seq || ',"eventId":' || ${jstr('event_id')}
  || ',"streamId":' || ${jstr('stream_id')} || ',"streamPosition":' || stream_position || ',"type":' || ${jstr('type')}
  || ',"schemaVersion":' || schema_version || ',"actor":{"kind":' || ${jstr('actor_kind')} || ',"id":' || ${jstr('actor_id')}
  || '},"subject":' || ${jstr('subject')} || ',"occurredAt":"' || ${iso('occurred_at')} || '","recordedAt":"' || ${iso('recorded_at')}
  || '","correlationId":' || ${jstr('correlation_id')} || ',"causationId":' || ${jstr('causation_id')}
  || ',"hash":"' || encode(hash, 'hex') || '","payload":' || payload::text || E'}\\n'`;

/**
 * RFC 4180 field: quoted (quotes doubled) when it holds a comma, quote, CR or LF; a leading
 * = + - @ tab or CR gets an apostrophe first (a spreadsheet would run it as a formula: row.ts).
 */
const guarded = (expr: string) =>
  `(case when left(${expr}, 1) in ('=', '+', '-', '@', chr(9), chr(13)) then '''' || ${expr} else ${expr} end)`;
const csv = (expr: string) => {
  const g = guarded(expr);
  return `(case when ${g} ~ '[",\\r\\n]' then '"' || replace(${g}, '"', '""') || '"' else ${g} end)`;
};
const CSV_LINE =
  [
    'global_position::text',
    'chain_seq::text',
    csv('event_id'),
    csv('stream_id'),
    'stream_position::text',
    csv('type'),
    'schema_version::text',
    csv('actor_kind'),
    csv('actor_id'),
    csv(`coalesce(subject, '')`),
    iso('occurred_at'),
    iso('recorded_at'),
    csv(`coalesce(correlation_id, '')`),
    csv(`coalesce(causation_id, '')`),
    csv('payload::text'),
    `encode(hash, 'hex')`,
  ].join(` || ',' || `) + ` || E'\\r\\n'`;

/**
 * Every matching row as export lines, in page order, in chunks: each chunk is its own short
 * transaction (keyset from the last row), so memory stays flat and no transaction stays open for
 * the whole export. Rows projected after the export began sort before its first row and are
 * left out.
 */
export async function* streamAuditExport(
  pool: pg.Pool,
  tenantId: string,
  filters: AuditFilters,
  format: ExportFormat,
  chunkSize = 5000,
): AsyncGenerator<string> {
  const line = format === 'csv' ? CSV_LINE : NDJSON_LINE;
  const byTime = auditOrder(filters) === 'time';
  let before: AuditKey | undefined;
  for (;;) {
    const { where, orderBy, params } = auditQueryParts(tenantId, filters, before);
    params.push(chunkSize);
    const res = await withTenant(pool, tenantId, (c) =>
      c.query<{ line: string; p: string; t: string | null }>(
        `select ${line} as line, global_position as p, ${byTime ? `(extract(epoch from recorded_at) * 1000)::bigint` : 'null'} as t
           from audit_events where ${where} order by ${orderBy} limit $${params.length}`,
        params,
      ),
    );
    const rows = res.rows;
    if (rows.length) {
      let text = '';
      for (const r of rows) text += r.line;
      yield text;
    }
    if (rows.length < chunkSize) return;
    const last = rows[rows.length - 1]!;
    before = byTime ? { position: Number(last.p), recordedAt: Number(last.t) } : { position: Number(last.p) };
  }
}

/** The rows themselves, in page order and chunks (for tools and tests that want objects). */
export async function* streamAuditRows(
  pool: pg.Pool,
  tenantId: string,
  filters: AuditFilters,
  chunkSize = 5000,
): AsyncGenerator<AuditRow[]> {
  let before: AuditKey | undefined;
  for (;;) {
    const { rows, next } = await queryAuditPage(pool, tenantId, filters, chunkSize, before);
    if (rows.length) yield rows;
    if (!next) return;
    before = next;
  }
}
