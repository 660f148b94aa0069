import type { Actor, ActorKind, EventData, RecordedEvent } from '../envelope.ts';
import { ValidationError } from '../errors.ts';
import { defaultSchemaRegistry } from '../schemas/registry.ts';
import type { KeelSchemaRegistry } from '../schemas/registry.ts';

/**
 * The envelope as JSON, for HTTP (outbound webhooks, the read API, NDJSON exports): instants are
 * ISO-8601 strings, positions are numbers, absent optional fields are left out.
 */
export interface JsonEnvelope<Type extends string = string, Data extends EventData = EventData> {
  eventId: string;
  type: Type;
  schemaVersion: number;
  tenantId: string;
  streamId: string;
  streamPosition: number;
  globalPosition: number;
  occurredAt: string;
  recordedAt: string;
  actor: Actor;
  correlationId?: string;
  causationId?: string;
  traceparent?: string;
  data: Data;
}

export function toJsonEnvelope<Type extends string, Data extends EventData>(
  event: RecordedEvent<Type, Data>,
): JsonEnvelope<Type, Data> {
  const out: JsonEnvelope<Type, Data> = {
    eventId: event.eventId,
    type: event.type,
    schemaVersion: event.schemaVersion,
    tenantId: event.tenantId,
    streamId: event.streamId,
    streamPosition: event.streamPosition,
    globalPosition: event.globalPosition,
    occurredAt: event.occurredAt.toISOString(),
    recordedAt: event.recordedAt.toISOString(),
    actor: { kind: event.actor.kind, id: event.actor.id },
    data: event.data,
  };
  if (event.correlationId !== undefined) out.correlationId = event.correlationId;
  if (event.causationId !== undefined) out.causationId = event.causationId;
  if (event.traceparent !== undefined) out.traceparent = event.traceparent;
  return out;
}

const actorKinds: readonly ActorKind[] = ['user', 'apiKey', 'connector', 'system'];
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Parses and checks a JSON envelope (e.g. `JSON.parse` of a body): every envelope field, then the
 * data against the schema of its type and version, then upcasts to the newest version.
 * Throws ValidationError naming the first offending field (`occurredAt`, `actor.kind`, `data.externalId`).
 */
export function fromJsonEnvelope(obj: unknown, registry: KeelSchemaRegistry = defaultSchemaRegistry()): RecordedEvent {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ValidationError('an event envelope must be a JSON object', 'event', { field: 'event' });
  }
  const o = obj as Record<string, unknown>;
  const type = str(o, 'type');
  const schemaVersion = int(o, 'schemaVersion', 1);
  registry.schemaOf(type, schemaVersion); // unknown type or version → ValidationError on that field
  const actor = o['actor'];
  if (actor === null || typeof actor !== 'object' || Array.isArray(actor)) throw invalid('actor', 'an object {kind, id}');
  const a = actor as Record<string, unknown>;
  const kind = a['kind'];
  if (typeof kind !== 'string' || !actorKinds.includes(kind as ActorKind)) {
    throw invalid('actor.kind', `one of ${actorKinds.join(', ')}`);
  }
  const event: RecordedEvent = {
    eventId: str(o, 'eventId'),
    type,
    schemaVersion,
    tenantId: str(o, 'tenantId'),
    streamId: str(o, 'streamId'),
    streamPosition: int(o, 'streamPosition', 0),
    globalPosition: int(o, 'globalPosition', 0),
    occurredAt: date(o, 'occurredAt'),
    recordedAt: date(o, 'recordedAt'),
    actor: { kind: kind as ActorKind, id: str(a, 'id', 'actor.') },
    data: o['data'] as EventData,
  };
  for (const key of ['correlationId', 'causationId', 'traceparent'] as const) {
    if (o[key] !== undefined && o[key] !== null) event[key] = str(o, key);
  }
  registry.validate(type, schemaVersion, event.data);
  return registry.upcast(event);
}

function invalid(field: string, expected: string): ValidationError {
  return new ValidationError(`${field}: expected ${expected}`, field, { field, expected });
}

function str(o: Record<string, unknown>, key: string, prefix = ''): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) throw invalid(prefix + key, 'a non-empty string');
  return v;
}

function int(o: Record<string, unknown>, key: string, min: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw invalid(key, `an integer ≥ ${min}`);
  return v;
}

function date(o: Record<string, unknown>, key: string): Date {
  const v = o[key];
  const d = typeof v === 'string' && ISO_RE.test(v) ? new Date(v) : undefined;
  if (!d || Number.isNaN(d.getTime())) throw invalid(key, 'an ISO-8601 date-time string with zone');
  return d;
}
