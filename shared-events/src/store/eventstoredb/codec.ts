import type { JSONEventData, RecordedEvent as EsdbRecordedEvent } from '@eventstore/db-client';
import type { Actor, ActorKind, EventData, RecordedEvent } from '../../envelope.ts';
import { globalPositionOf, toRevision } from './positions.ts';

/**
 * How a Keel event is laid out in EventStoreDB: the event's type is the EventStoreDB event type,
 * `data` is the JSON body, the event id is the EventStoreDB event id (the server dedupes retried
 * appends by it), and the rest of the envelope travels as JSON metadata.
 */

/** An event ready to be written: validated, with eventId, schemaVersion and occurredAt filled in. */
export interface PreparedEvent {
  eventId: string;
  type: string;
  schemaVersion: number;
  tenantId: string;
  data: EventData;
  actor: Actor;
  occurredAt: Date;
  correlationId?: string;
  causationId?: string;
  traceparent?: string;
}

/** Version of the metadata layout; also marks an event in $all as Keel's. */
export const KEEL_METADATA_VERSION = 1;

export interface KeelEventMetadata {
  keel: typeof KEEL_METADATA_VERSION;
  eventId: string;
  tenantId: string;
  schemaVersion: number;
  actor: Actor;
  /** ISO-8601 with milliseconds. */
  occurredAt: string;
  correlationId?: string;
  causationId?: string;
  traceparent?: string;
  /**
   * EventStoreDB's own spelling of the same links: its `$by_correlation_id` system projection and
   * its UI read these keys, so operators can follow a correlation id without Keel.
   */
  $correlationId?: string;
  $causationId?: string;
}

const ACTOR_KINDS: readonly ActorKind[] = ['user', 'apiKey', 'connector', 'system'];

export function metadataOf(e: PreparedEvent): KeelEventMetadata {
  const m: KeelEventMetadata = {
    keel: KEEL_METADATA_VERSION,
    eventId: e.eventId,
    tenantId: e.tenantId,
    schemaVersion: e.schemaVersion,
    actor: { kind: e.actor.kind, id: e.actor.id },
    occurredAt: e.occurredAt.toISOString(),
  };
  if (e.correlationId !== undefined) m.correlationId = m.$correlationId = e.correlationId;
  if (e.causationId !== undefined) m.causationId = m.$causationId = e.causationId;
  if (e.traceparent !== undefined) m.traceparent = e.traceparent;
  return m;
}

export function toEventData(e: PreparedEvent): JSONEventData {
  return {
    id: e.eventId,
    contentType: 'application/json',
    type: e.type,
    data: e.data,
    metadata: metadataOf(e) as unknown as Record<string, unknown>,
  };
}

export class CorruptEventError extends Error {
  constructor(
    readonly streamId: string,
    readonly eventId: string,
    problem: string,
  ) {
    super(`event ${eventId} in stream ${streamId} has corrupt Keel metadata: ${problem}`);
    this.name = 'CorruptEventError';
  }
}

/**
 * The Keel metadata of a stored event: undefined when the event is not Keel's (system events
 * such as `$metadata`, `$>` links or `$streamDeleted`, or events other software wrote), and a
 * CorruptEventError when it claims to be Keel's but does not parse.
 */
export function parseKeelMetadata(raw: unknown, streamId: string, eventId: string): KeelEventMetadata | undefined {
  if (raw === null || typeof raw !== 'object' || raw instanceof Uint8Array || Array.isArray(raw)) return undefined;
  const m = raw as Record<string, unknown>;
  if (m.keel === undefined) return undefined;
  const bad = (problem: string) => new CorruptEventError(streamId, eventId, problem);
  if (m.keel !== KEEL_METADATA_VERSION) throw bad(`unknown layout version ${JSON.stringify(m.keel)}`);
  if (typeof m.eventId !== 'string' || !m.eventId) throw bad('eventId');
  if (typeof m.tenantId !== 'string' || !m.tenantId) throw bad('tenantId');
  if (!Number.isSafeInteger(m.schemaVersion) || (m.schemaVersion as number) < 1) throw bad('schemaVersion');
  const actor = m.actor as Record<string, unknown> | null | undefined;
  if (
    !actor ||
    typeof actor !== 'object' ||
    !ACTOR_KINDS.includes(actor.kind as ActorKind) ||
    typeof actor.id !== 'string'
  ) {
    throw bad('actor');
  }
  if (typeof m.occurredAt !== 'string' || Number.isNaN(Date.parse(m.occurredAt))) throw bad('occurredAt');
  for (const k of ['correlationId', 'causationId', 'traceparent'] as const) {
    if (m[k] !== undefined && typeof m[k] !== 'string') throw bad(k);
  }
  return m as unknown as KeelEventMetadata;
}

/**
 * A stored EventStoreDB event as a Keel RecordedEvent (before upcasting), or undefined when it
 * is not a Keel event. `globalPosition` overrides the event's own position (a $all read carries
 * it on the resolved event too).
 */
export function fromEsdbEvent(ev: EsdbRecordedEvent, globalPosition?: number): RecordedEvent | undefined {
  if (ev.type.startsWith('$')) return undefined;
  const meta = parseKeelMetadata(ev.metadata, ev.streamId, ev.id);
  if (!meta) return undefined;
  if (!ev.isJson || ev.data === null || typeof ev.data !== 'object' || Array.isArray(ev.data)) {
    throw new CorruptEventError(ev.streamId, ev.id, 'data is not a JSON object');
  }
  const recorded: RecordedEvent = {
    // The id we wrote, byte for byte (EventStoreDB normalises its own copy to lowercase).
    eventId: meta.eventId,
    type: ev.type,
    schemaVersion: meta.schemaVersion,
    tenantId: meta.tenantId,
    streamId: ev.streamId,
    streamPosition: toRevision(ev.revision),
    globalPosition: globalPosition ?? globalPositionOf(ev.position, `position of event ${ev.id}`),
    occurredAt: new Date(meta.occurredAt),
    recordedAt: ev.created,
    actor: { kind: meta.actor.kind, id: meta.actor.id },
    data: ev.data as EventData,
  };
  if (meta.correlationId !== undefined) recorded.correlationId = meta.correlationId;
  if (meta.causationId !== undefined) recorded.causationId = meta.causationId;
  if (meta.traceparent !== undefined) recorded.traceparent = meta.traceparent;
  return recorded;
}
