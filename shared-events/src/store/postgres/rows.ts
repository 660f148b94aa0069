import type { ActorKind, EventData, RecordedEvent } from '../../envelope.ts';

/**
 * The event columns every read selects, in this order. Rows come back as arrays of raw text
 * (`rowMode: 'array'`, no type parsers): at hundreds of thousands of events per second the
 * generic per-column parsers (notably timestamps) cost more than the query. Times come as
 * epoch milliseconds: both are stored at millisecond precision (what a JS Date holds).
 */
export const EVENT_COLUMNS = `e.global_position, e.stream_position, e.event_id, e.schema_version,
  date_part('epoch', e.occurred_at) * 1000, date_part('epoch', e.recorded_at) * 1000,
  e.tenant_id, e.stream_id, e.type, e.actor_kind, e.actor_id, e.correlation_id, e.causation_id,
  e.traceparent, e.data`;

export const EVENT_COLUMN_COUNT = 15;

export type RawRow = (string | null)[];

/** node-pg type hooks that hand every column over as the server's text. */
export const RAW_TYPES = { getTypeParser: () => (value: string) => value } as unknown as import('pg').CustomTypesConfig;

export function toRecordedEvent(r: RawRow): RecordedEvent {
  const event: RecordedEvent = {
    eventId: r[2]!,
    type: r[8]!,
    schemaVersion: Number(r[3]),
    tenantId: r[6]!,
    streamId: r[7]!,
    streamPosition: Number(r[1]),
    globalPosition: Number(r[0]),
    occurredAt: new Date(Math.round(Number(r[4]))),
    recordedAt: new Date(Math.round(Number(r[5]))),
    actor: { kind: r[9] as ActorKind, id: r[10]! },
    data: JSON.parse(r[14]!) as EventData,
  };
  if (r[11] !== null) event.correlationId = r[11];
  if (r[12] !== null) event.causationId = r[12];
  if (r[13] !== null) event.traceparent = r[13];
  return event;
}
