import type { ActorKind, EventData, RecordedEvent } from '@keel/shared-events';
import { parseStreamName } from '@keel/shared-events';
import { fastCanonicalJson } from './canonical.ts';

/**
 * One audit-trail row per event: who (actor) did what (type, payload) to what (subject, stream),
 * when (occurredAt = business time, recordedAt = store time), linked by correlation/causation.
 * The payload is kept exactly as the store holds it, so personal fields stay encrypted.
 */
export interface AuditEntry {
  tenantId: string;
  globalPosition: number;
  streamId: string;
  streamPosition: number;
  eventId: string;
  type: string;
  schemaVersion: number;
  actorKind: ActorKind;
  actorId: string;
  /** What the event is about, e.g. `user:u1`, `connector:c1`, `record:customer/42`. Derived, not hashed. */
  subject: string | null;
  occurredAt: Date;
  recordedAt: Date;
  correlationId: string | null;
  causationId: string | null;
  /** The event data as canonical JSON text: stored verbatim (a `json` column keeps the text) and hashed as is. */
  payload: string;
}

/** An entry as stored: with its place in the tenant's hash chain. */
export interface AuditRow extends AuditEntry {
  /** 1-based, gap-free per tenant. */
  chainSeq: number;
  /** SHA-256(previous hash ‖ canonical form of the entry). */
  hash: Buffer;
}

/** The fields of `data` that name the thing an event is about, in order of preference. */
const SUBJECT_FIELDS: readonly [string, string][] = [
  ['deliveryId', 'delivery'],
  ['runId', 'run'],
  ['keyId', 'apiKey'],
  ['userId', 'user'],
  ['connectorId', 'connector'],
  ['flowId', 'flow'],
  ['webhookId', 'webhook'],
  ['sourceId', 'source'],
];

export function auditSubject(event: Pick<RecordedEvent, 'type' | 'streamId' | 'data'>): string | null {
  const data = event.data as Record<string, unknown>;
  if (event.type === 'RecordIngested' && typeof data.entityType === 'string' && typeof data.externalId === 'string') {
    return `record:${data.entityType}/${data.externalId}`;
  }
  if (event.type === 'AccessDenied') {
    return typeof data.targetTenantId === 'string'
      ? `tenant:${data.targetTenantId}`
      : `path:${String(data.path ?? '')}`;
  }
  for (const [field, kind] of SUBJECT_FIELDS) {
    const v = data[field];
    if (typeof v === 'string' && v !== '') return `${kind}:${v}`;
  }
  const name = parseStreamName(event.streamId);
  return name ? `${name.category}:${name.id}` : null;
}

export function toAuditEntry(event: RecordedEvent): AuditEntry {
  return {
    tenantId: event.tenantId,
    globalPosition: event.globalPosition,
    streamId: event.streamId,
    streamPosition: event.streamPosition,
    eventId: event.eventId,
    type: event.type,
    schemaVersion: event.schemaVersion,
    actorKind: event.actor.kind,
    actorId: event.actor.id,
    subject: auditSubject(event),
    occurredAt: event.occurredAt,
    recordedAt: event.recordedAt,
    correlationId: event.correlationId ?? null,
    causationId: event.causationId ?? null,
    payload: fastCanonicalJson(event.data),
  };
}

/** The public JSON shape of a row (API items, NDJSON export lines). */
export interface AuditItem {
  position: number;
  chainSeq: number;
  eventId: string;
  streamId: string;
  streamPosition: number;
  type: string;
  schemaVersion: number;
  actor: { kind: ActorKind; id: string };
  subject: string | null;
  occurredAt: string;
  recordedAt: string;
  correlationId: string | null;
  causationId: string | null;
  payload: EventData;
  hash: string;
}

export function toAuditItem(row: AuditRow): AuditItem {
  return { ...itemWithoutPayload(row), payload: JSON.parse(row.payload) as EventData };
}

/** NDJSON line without parsing the payload: the stored canonical text is spliced in as is. */
export function toNdjsonLine(row: AuditRow): string {
  const head = JSON.stringify(itemWithoutPayload(row));
  return `${head.slice(0, -1)},"payload":${row.payload}}\n`;
}

function itemWithoutPayload(row: AuditRow): Omit<AuditItem, 'payload'> {
  return {
    position: row.globalPosition,
    chainSeq: row.chainSeq,
    eventId: row.eventId,
    streamId: row.streamId,
    streamPosition: row.streamPosition,
    type: row.type,
    schemaVersion: row.schemaVersion,
    actor: { kind: row.actorKind, id: row.actorId },
    subject: row.subject,
    occurredAt: row.occurredAt.toISOString(),
    recordedAt: row.recordedAt.toISOString(),
    correlationId: row.correlationId,
    causationId: row.causationId,
    hash: row.hash.toString('hex'),
  };
}

export const CSV_COLUMNS = [
  'position',
  'chainSeq',
  'eventId',
  'streamId',
  'streamPosition',
  'type',
  'schemaVersion',
  'actorKind',
  'actorId',
  'subject',
  'occurredAt',
  'recordedAt',
  'correlationId',
  'causationId',
  'payload',
  'hash',
] as const;

/**
 * A cell that starts with = + - @ (or a tab / CR) is a formula to a spreadsheet: a correlation id
 * or actor id chosen by a caller could run one when an auditor opens the export (CSV injection).
 * Such a cell gets a leading apostrophe, which spreadsheets show as text; NDJSON stays verbatim.
 */
function csvField(v: string): string {
  const c = v.charCodeAt(0);
  if (c === 0x3d || c === 0x2b || c === 0x2d || c === 0x40 || c === 0x09 || c === 0x0d) v = `'${v}`;
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** RFC 4180 line (CRLF). Values are exported as stored (payload as its JSON text), formula-looking cells guarded (above). */
export function toCsvLine(row: AuditRow): string {
  const item = itemWithoutPayload(row);
  const values: string[] = [
    String(item.position),
    String(item.chainSeq),
    item.eventId,
    item.streamId,
    String(item.streamPosition),
    item.type,
    String(item.schemaVersion),
    item.actor.kind,
    item.actor.id,
    item.subject ?? '',
    item.occurredAt,
    item.recordedAt,
    item.correlationId ?? '',
    item.causationId ?? '',
    row.payload,
    item.hash,
  ];
  return values.map(csvField).join(',') + '\r\n';
}

export const CSV_HEADER = CSV_COLUMNS.join(',') + '\r\n';
