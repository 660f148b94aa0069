import { createHash } from 'node:crypto';
import { canonicalHash, streamName, type Actor, type Json, type NewEvent, type RecordIngestedData } from '@keel/shared-events';

/**
 * One ingested record: `{source, entityType, externalId, occurredAt?, payload}`. Validation is
 * per record (a bad record is reported by index; the others are stored), hand-written because
 * it runs tens of thousands of times a second and must name the offending field.
 *
 * Identifiers end up in stream ids (`record-<tenant>-<entityType>-<externalId>`) and in URLs of
 * the read side, so they are restricted to safe characters; free text lives in the payload.
 */
export interface IngestRecord {
  source: string;
  entityType: string;
  externalId: string;
  occurredAt?: Date;
  payload: { [key: string]: Json };
  /** canonicalJson(payload), when validation could make it cheaply. */
  canonicalPayload?: string;
}

export type RecordRejectionCode = 'INVALID_JSON' | 'NOT_AN_OBJECT' | 'UNKNOWN_FIELD' | 'MISSING_FIELD' | 'INVALID_FIELD' | 'TOO_LARGE';

export interface RecordRejection {
  code: RecordRejectionCode;
  message: string;
}

export type RecordResult = { ok: true; record: IngestRecord } | { ok: false; rejection: RecordRejection };

export const SOURCE_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
/** No dash: the entity type is followed by a dash in the stream id. */
export const ENTITY_TYPE_RE = /^[A-Za-z][A-Za-z0-9_.]{0,63}$/;
export const EXTERNAL_ID_RE = /^[A-Za-z0-9_][A-Za-z0-9._:@+=~-]{0,199}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const FIELDS = new Set(['source', 'entityType', 'externalId', 'occurredAt', 'payload']);
export const MAX_PAYLOAD_DEPTH = 64;

const reject = (code: RecordRejectionCode, message: string): RecordResult => ({ ok: false, rejection: { code, message } });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * PostgreSQL's jsonb refuses \u0000 and lone surrogates; one such record would fail its whole
 * batch, so it is refused here, alone. Also bounds the nesting depth, and collects the payload's
 * property names on the way (see canonicalPayloadJson).
 */
function payloadProblem(v: unknown, depth: number, keys: Set<string>): string | undefined {
  if (typeof v === 'string') return stringProblem(v);
  if (v === null || typeof v !== 'object') return undefined;
  if (depth > MAX_PAYLOAD_DEPTH) return `is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`;
  if (Array.isArray(v)) {
    for (const x of v) {
      const p = payloadProblem(x, depth + 1, keys);
      if (p) return p;
    }
    return undefined;
  }
  for (const k in v as Record<string, unknown>) {
    keys.add(k);
    const p = stringProblem(k) ?? payloadProblem((v as Record<string, unknown>)[k], depth + 1, keys);
    if (p) return p;
  }
  return undefined;
}

/** Beyond this many distinct property names the property-list trick costs more than it saves. */
const MAX_CANONICAL_KEYS = 256;

/**
 * canonicalJson (shared-events) of a value that came out of JSON.parse, at native speed:
 * `JSON.stringify` with an array replacer writes every object's properties in the order of that
 * array, so the sorted list of all property names gives sorted keys at every level. For parsed
 * JSON (no toJSON functions, no undefined, no cycles, finite numbers) this is exactly
 * canonicalJson's text, 3-4x faster (equality is property-tested in test/unit/records.test.ts).
 */
export function canonicalPayloadJson(payload: unknown, keys: ReadonlySet<string>): string | undefined {
  // The list is looked up on every object, inherited properties included: "__proto__" would
  // find Object.prototype on objects that lack it (functions such as "toString" are skipped).
  if (keys.size > MAX_CANONICAL_KEYS || keys.has('__proto__')) return undefined;
  return JSON.stringify(payload, [...keys].sort());
}

function stringProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character (\\u0000)';
  if (!(s as string & { isWellFormed(): boolean }).isWellFormed()) return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

function idField(o: Record<string, unknown>, field: string, re: RegExp, what: string): RecordResult | undefined {
  const v = o[field];
  if (v === undefined) return reject('MISSING_FIELD', `${field} is required`);
  if (typeof v !== 'string') return reject('INVALID_FIELD', `${field} must be a string`);
  if (!re.test(v)) return reject('INVALID_FIELD', `${field} must be ${what}`);
  return undefined;
}

export function validateRecord(value: unknown): RecordResult {
  if (!isPlainObject(value)) return reject('NOT_AN_OBJECT', 'a record must be a JSON object');
  for (const k in value) if (!FIELDS.has(k)) return reject('UNKNOWN_FIELD', `${k.slice(0, 64)} is not a record field`);
  const bad =
    idField(value, 'source', SOURCE_RE, '1 to 100 letters, digits or ._:- (starting with a letter or digit)') ??
    idField(value, 'entityType', ENTITY_TYPE_RE, 'a letter then up to 63 letters, digits, _ or .') ??
    idField(value, 'externalId', EXTERNAL_ID_RE, '1 to 200 letters, digits or ._:@+=~- (no spaces or slashes)');
  if (bad) return bad;
  let occurredAt: Date | undefined;
  if (value.occurredAt !== undefined) {
    const t = value.occurredAt;
    if (typeof t !== 'string' || !ISO_RE.test(t) || Number.isNaN((occurredAt = new Date(t)).getTime()))
      return reject('INVALID_FIELD', 'occurredAt must be an ISO-8601 date-time with a time zone');
  }
  if (value.payload === undefined) return reject('MISSING_FIELD', 'payload is required');
  if (!isPlainObject(value.payload)) return reject('INVALID_FIELD', 'payload must be a JSON object');
  const keys = new Set<string>();
  const problem = payloadProblem(value.payload, 1, keys);
  if (problem) return reject('INVALID_FIELD', `payload ${problem}`);
  const record: IngestRecord = {
    source: value.source as string,
    entityType: value.entityType as string,
    externalId: value.externalId as string,
    payload: value.payload as { [key: string]: Json },
  };
  const canonical = canonicalPayloadJson(value.payload, keys);
  if (canonical !== undefined) record.canonicalPayload = canonical;
  if (occurredAt) record.occurredAt = occurredAt;
  return { ok: true, record };
}

export function parseRecordLine(line: string): RecordResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return reject('INVALID_JSON', `not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  return validateRecord(value);
}

export function recordStreamId(tenantId: string, entityType: string, externalId: string): string {
  return streamName('record', tenantId, `${entityType}-${externalId}`);
}

export interface RecordEventOptions {
  tenantId: string;
  actor: Actor;
  receivedVia: 'api' | 'webhook';
  correlationId?: string;
  eventId?: string;
}

export function recordEvent(record: IngestRecord, o: RecordEventOptions): { streamId: string; event: NewEvent<'RecordIngested', RecordIngestedData> } {
  const data: RecordIngestedData = {
    source: record.source,
    entityType: record.entityType,
    externalId: record.externalId,
    payload: record.payload,
    receivedVia: o.receivedVia,
    contentHash:
      record.canonicalPayload !== undefined
        ? createHash('sha256').update(record.canonicalPayload, 'utf8').digest('hex')
        : canonicalHash(record.payload),
  };
  const event: NewEvent<'RecordIngested', RecordIngestedData> = {
    type: 'RecordIngested',
    schemaVersion: 2,
    tenantId: o.tenantId,
    data,
    actor: o.actor,
  };
  if (o.eventId) event.eventId = o.eventId;
  if (record.occurredAt) event.occurredAt = record.occurredAt;
  if (o.correlationId) event.correlationId = o.correlationId;
  return { streamId: recordStreamId(o.tenantId, record.entityType, record.externalId), event };
}
