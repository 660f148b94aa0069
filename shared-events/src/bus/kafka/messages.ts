import type { IHeaders, KafkaMessage, Message } from 'kafkajs';
import type { RecordedEvent } from '../../envelope.ts';
import { streamCategory } from '../../envelope.ts';
import type { EventCodec } from '../../codec/avro.ts';
import type { AllFilter } from '../../store/port.ts';

/** The fan-out topic: key = tenantId (a tenant's events stay in order on one partition), value = Avro. */
export const EVENTS_TOPIC = 'keel.events.v1';
export const DEAD_LETTER_TOPIC = 'keel.events.v1.dlq';
export const EVENTS_PARTITIONS = 12;

/** Header names. `traceparent` is the W3C name, so tracing tools pick it up unchanged. */
export const HEADERS = {
  eventType: 'keel-event-type',
  fingerprint: 'keel-schema-fingerprint',
  tenantId: 'keel-tenant-id',
  traceparent: 'traceparent',
  deadLetterGroup: 'keel-dlq-group',
  deadLetterReason: 'keel-dlq-reason',
  deadLetterAttempts: 'keel-dlq-attempts',
  deadLetterAt: 'keel-dlq-at',
} as const;

export type BusCodec = Pick<EventCodec, 'encode' | 'decode' | 'fingerprintOf'>;

export function toKafkaMessage(event: RecordedEvent, codec: BusCodec): Message {
  const headers: IHeaders = {
    [HEADERS.eventType]: event.type,
    [HEADERS.fingerprint]: codec.fingerprintOf(event.type, event.schemaVersion),
    [HEADERS.tenantId]: event.tenantId,
  };
  if (event.traceparent) headers[HEADERS.traceparent] = event.traceparent;
  return { key: event.tenantId, value: codec.encode(event), headers };
}

/** Decodes (and upcasts) a message; throws MalformedEventError / UnknownSchemaError from the codec. */
export function fromKafkaMessage(message: Pick<KafkaMessage, 'value'>, codec: BusCodec): RecordedEvent {
  if (!message.value) throw new EmptyMessageError();
  return codec.decode(message.value);
}

export class EmptyMessageError extends Error {
  readonly code = 'MALFORMED_EVENT';
  constructor() {
    super('message has no value');
    this.name = 'EmptyMessageError';
  }
}

export function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

/** Client-side version of the store's AllFilter (Kafka has no server-side filter). */
export function matchesFilter(event: RecordedEvent, filter: AllFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.tenantId !== undefined && event.tenantId !== filter.tenantId) return false;
  if (filter.eventTypes && !filter.eventTypes.includes(event.type)) return false;
  if (filter.categories && !filter.categories.includes(streamCategory(event.streamId))) return false;
  return true;
}
