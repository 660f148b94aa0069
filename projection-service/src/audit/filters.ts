import type { ActorKind } from '@keel/shared-events';
import { ValidationError, parseStreamName } from '@keel/shared-events';
import { decodeCursor, encodeCursor, filterFingerprint } from '../read/cursor.ts';
import { ID_RE, TYPE_RE, limit, matching, nonNegativeInt, rejectUnknown, single, timeRange } from '../read/params.ts';
import type { Query } from '../read/params.ts';

/**
 * The audit trail's filters (API.md: from, to, actor, type, streamId, correlationId), parsed and
 * validated from a query string. Pure.
 *
 * - `from`/`to` bound the store time (recordedAt): from inclusive, to exclusive;
 * - `actor` is `<id>` or `<kind>:<id>` (kind: user, apiKey, connector, system);
 * - `type` is one event type or a comma-separated list;
 * - `streamId` must be a stream of the tenant in the path.
 */
export interface AuditFilters {
  from?: Date;
  to?: Date;
  actor?: { kind?: ActorKind; id: string };
  types?: string[];
  streamId?: string;
  correlationId?: string;
}

/**
 * Where a page starts: strictly after this key in the page order. Without a time filter the
 * order is global position, newest first; with from/to it is (recordedAt, position), newest first,
 * which the (tenant_id, recorded_at, global_position) index serves in one range scan however deep
 * in history the window lies.
 */
export interface AuditKey {
  position: number;
  /** Epoch ms; set when the order is by time. */
  recordedAt?: number;
}

export type AuditOrder = 'position' | 'time';

export function auditOrder(filters: AuditFilters): AuditOrder {
  return filters.from || filters.to ? 'time' : 'position';
}

export interface AuditPageQuery {
  filters: AuditFilters;
  limit: number;
  /** Items strictly after this key in the page order. */
  before?: AuditKey;
  minPosition?: number;
  fingerprint: string;
}

export const AUDIT_FILTER_PARAMS = ['from', 'to', 'actor', 'type', 'streamId', 'correlationId'] as const;
export const AUDIT_PAGE_DEFAULT = 50;
export const AUDIT_PAGE_MAX = 1000;

const ACTOR_KINDS: readonly ActorKind[] = ['user', 'apiKey', 'connector', 'system'];

export interface ParseContext {
  tenantId: string;
  /** True when `type` is an event type the platform knows. */
  isKnownType: (type: string) => boolean;
}

export function parseAuditFilters(query: Query, ctx: ParseContext): AuditFilters {
  const filters: AuditFilters = { ...timeRange(query) };

  const actor = single(query, 'actor');
  if (actor !== undefined) {
    const colon = actor.indexOf(':');
    const kind = colon > 0 ? actor.slice(0, colon) : undefined;
    if (kind !== undefined && (ACTOR_KINDS as readonly string[]).includes(kind)) {
      const id = actor.slice(colon + 1);
      if (!ID_RE.test(id)) throw new ValidationError('actor must be <id> or <kind>:<id> with a plain id', 'actor');
      filters.actor = { kind: kind as ActorKind, id };
    } else {
      if (!ID_RE.test(actor)) throw new ValidationError('actor must be <id> or <kind>:<id> with a plain id', 'actor');
      filters.actor = { id: actor };
    }
  }

  const type = single(query, 'type');
  if (type !== undefined) {
    const types = [...new Set(type.split(','))];
    if (types.length > 50) throw new ValidationError('type lists at most 50 event types', 'type');
    for (const t of types) {
      if (!TYPE_RE.test(t) || !ctx.isKnownType(t))
        throw new ValidationError(`type "${t.slice(0, 100)}" is not a known event type`, 'type');
    }
    filters.types = types.sort();
  }

  const streamId = single(query, 'streamId');
  if (streamId !== undefined) {
    const name = parseStreamName(streamId);
    // No whitespace or control characters, and none of the characters that only show up in injection attempts.
    if (
      streamId.length > 400 ||
      /[\p{Cc}\s'"`\\;<>]/u.test(streamId) ||
      !name ||
      !/^[a-z][a-z0-9_]*$/.test(name.category)
    ) {
      throw new ValidationError('streamId must be a stream id {category}-{tenantId}-{id}', 'streamId');
    }
    if (name.tenantId !== ctx.tenantId)
      throw new ValidationError('streamId names a stream of another tenant', 'streamId');
    filters.streamId = streamId;
  }

  const correlationId = matching(query, 'correlationId', ID_RE, 'an id (letters, digits, ._:@/-)');
  if (correlationId !== undefined) filters.correlationId = correlationId;
  return filters;
}

function fingerprintOf(filters: AuditFilters): string {
  return filterFingerprint('audit', {
    ...filters,
    from: filters.from?.toISOString(),
    to: filters.to?.toISOString(),
  });
}

export function parseAuditPage(query: Query, ctx: ParseContext): AuditPageQuery {
  rejectUnknown(query, [...AUDIT_FILTER_PARAMS, 'limit', 'cursor', 'minPosition']);
  const filters = parseAuditFilters(query, ctx);
  const fingerprint = fingerprintOf(filters);
  const cursor = single(query, 'cursor');
  let before: AuditKey | undefined;
  if (cursor !== undefined) {
    if (auditOrder(filters) === 'time') {
      const [recordedAt, position] = decodeCursor(cursor, fingerprint, ['int', 'int']) as [number, number];
      before = { recordedAt, position };
    } else {
      before = { position: decodeCursor(cursor, fingerprint, ['int'])[0] as number };
    }
  }
  return {
    filters,
    limit: limit(query, AUDIT_PAGE_DEFAULT, AUDIT_PAGE_MAX),
    before,
    minPosition: nonNegativeInt(query, 'minPosition'),
    fingerprint,
  };
}

export type ExportFormat = 'ndjson' | 'csv';

export interface AuditExportQuery {
  filters: AuditFilters;
  format: ExportFormat;
  minPosition?: number;
}

export function parseAuditExport(query: Query, ctx: ParseContext): AuditExportQuery {
  rejectUnknown(query, [...AUDIT_FILTER_PARAMS, 'format', 'minPosition']);
  const format = single(query, 'format') ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'csv') throw new ValidationError('format must be ndjson or csv', 'format');
  return { filters: parseAuditFilters(query, ctx), format, minPosition: nonNegativeInt(query, 'minPosition') };
}

export function nextAuditCursor(last: AuditKey, fingerprint: string): string {
  return encodeCursor(last.recordedAt === undefined ? [last.position] : [last.recordedAt, last.position], fingerprint);
}
