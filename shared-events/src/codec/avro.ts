import avro from 'avsc';
import type { ActorKind, EventData, RecordedEvent } from '../envelope.ts';
import { ValidationError } from '../errors.ts';
import { findProblem, parseEventSchema, defaultSchemaRegistry } from '../schemas/registry.ts';
import type { EventSchema, KeelSchemaRegistry } from '../schemas/registry.ts';
import { crc64Avro, fingerprintHex } from './crc64.ts';
import { MalformedEventError, UnknownSchemaError } from './errors.ts';

/**
 * Avro binary codec for the bus (Kafka values). Each message is an Avro single-object encoding:
 *
 *   C3 01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes little-endian | Avro body
 *
 * The writer schema is the envelope record with `data` typed as the event's own record, one
 * envelope schema per type and version (`keel.envelope.<Type>_v<version>`). So the body's `data`
 * part is exactly the type's Avro record encoding, and the fingerprint alone says type, version
 * and envelope layout: a reader looks the schema up by it, decodes, and upcasts.
 */
export interface EventCodec {
  /** Validates (ValidationError naming the field, e.g. "data.externalId") and encodes at the event's own version. */
  encode(event: RecordedEvent): Buffer;
  /** Decodes with the writer schema named by the fingerprint, then upcasts to the newest version. */
  decode(buf: Uint8Array): RecordedEvent;
  /** Decodes without upcasting (tools that show what was written). */
  decodeAsWritten(buf: Uint8Array): RecordedEvent;
  /** Fingerprint of the writer schema of `type` at `version` (16 hex digits), e.g. for a Kafka header. */
  fingerprintOf(type: string, version: number): string;
  /** The fingerprint in an encoded event's header, without decoding the body. */
  fingerprintOfEncoded(buf: Uint8Array): string;
  /** Which type and version a fingerprint stands for; undefined when unknown. */
  schemaOfFingerprint(fingerprint: string): { type: string; schemaVersion: number } | undefined;
  /** The writer schema (JSON) for a type and version: what a schema registry or another language needs. */
  writerSchemaOf(type: string, version: number): avro.Schema;
}

const MAGIC_0 = 0xc3;
const MAGIC_1 = 0x01;
const HEADER = 10;
/** Events bigger than this are encoded into their own buffer rather than growing the scratch one for good. */
const MAX_SCRATCH = 4 * 1024 * 1024;

const actorKinds: ActorKind[] = ['user', 'apiKey', 'connector', 'system'];

interface WriterSchema {
  entry: EventSchema;
  schema: avro.Schema;
  type: avro.Type;
  fingerprint: bigint;
  hex: string;
  /** The 10-byte single-object header, ready to copy. */
  header: Buffer;
}

/** The envelope record around one type's data record. Field order is part of the wire format. */
export function envelopeSchemaFor(entry: EventSchema): avro.Schema {
  const optionalString = (name: string) => ({ name, type: ['null', 'string'], default: null });
  return {
    type: 'record',
    name: `keel.envelope.${entry.type}_v${entry.version}`,
    fields: [
      { name: 'eventId', type: 'string' },
      { name: 'tenantId', type: 'string' },
      { name: 'streamId', type: 'string' },
      { name: 'streamPosition', type: 'long' },
      { name: 'globalPosition', type: 'long' },
      { name: 'occurredAt', type: { type: 'long', logicalType: 'timestamp-millis' } },
      { name: 'recordedAt', type: { type: 'long', logicalType: 'timestamp-millis' } },
      {
        name: 'actor',
        type: {
          type: 'record',
          name: 'keel.envelope.Actor',
          fields: [
            { name: 'kind', type: { type: 'enum', name: 'keel.envelope.ActorKind', symbols: actorKinds } },
            { name: 'id', type: 'string' },
          ],
        },
      },
      optionalString('correlationId'),
      optionalString('causationId'),
      optionalString('traceparent'),
      { name: 'data', type: entry.schema },
    ],
  } as avro.Schema;
}

export function createEventCodec(registry: KeelSchemaRegistry = defaultSchemaRegistry()): EventCodec {
  const byKey = new Map<string, WriterSchema>();
  let scratch = Buffer.allocUnsafe(64 * 1024);
  const byFingerprint = new Map<bigint, WriterSchema>();

  for (const type of registry.eventTypes()) {
    for (const version of registry.versions(type)) {
      const entry = registry.schemaOf(type, version);
      const schema = envelopeSchemaFor(entry);
      const avroType = parseEventSchema(schema);
      // avsc's schema() without attributes is the Parsing Canonical Form: full names, only
      // name/type/fields/symbols/items/values/size, in that order, no logicalType or defaults.
      const fingerprint = crc64Avro(JSON.stringify(avroType.schema()));
      const clash = byFingerprint.get(fingerprint);
      if (clash) throw new Error(`${type} v${version} and ${clash.entry.type} v${clash.entry.version} have the same fingerprint`);
      const header = Buffer.alloc(HEADER);
      header[0] = MAGIC_0;
      header[1] = MAGIC_1;
      header.writeBigUInt64LE(fingerprint, 2);
      const ws: WriterSchema = { entry, schema, type: avroType, fingerprint, hex: fingerprintHex(fingerprint), header };
      byKey.set(`${type}\u0000${version}`, ws);
      byFingerprint.set(fingerprint, ws);
    }
  }

  function writerOf(type: string, version: number): WriterSchema {
    const ws = byKey.get(`${type}\u0000${version}`);
    if (!ws) registry.schemaOf(type, version); // throws the precise ValidationError (type or schemaVersion)
    return ws!;
  }

  function readWriter(buf: Uint8Array): WriterSchema {
    if (buf.length < HEADER || buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) {
      throw new MalformedEventError('not an Avro single-object encoded event (expected the C3 01 marker and a fingerprint)');
    }
    const fp = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(2);
    const ws = byFingerprint.get(fp);
    if (!ws) throw new UnknownSchemaError(fingerprintHex(fp));
    return ws;
  }

  function decodeAsWritten(buf: Uint8Array): RecordedEvent {
    const ws = readWriter(buf);
    const bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    let rec: AvroEnvelope;
    try {
      const { value, offset } = ws.type.decode(bytes, HEADER);
      if (offset < 0) throw new Error('truncated body');
      if (offset !== bytes.length) throw new Error(`${bytes.length - offset} bytes of trailing data`);
      rec = value as AvroEnvelope;
    } catch (err) {
      throw new MalformedEventError(`cannot decode ${ws.entry.type} v${ws.entry.version}: ${(err as Error).message}`, {
        type: ws.entry.type,
        schemaVersion: ws.entry.version,
      });
    }
    const event: RecordedEvent = {
      eventId: rec.eventId,
      type: ws.entry.type,
      schemaVersion: ws.entry.version,
      tenantId: rec.tenantId,
      streamId: rec.streamId,
      streamPosition: rec.streamPosition,
      globalPosition: rec.globalPosition,
      occurredAt: rec.occurredAt,
      recordedAt: rec.recordedAt,
      actor: { kind: rec.actor.kind, id: rec.actor.id },
      data: ws.entry.toPlainData(rec.data),
    };
    if (rec.correlationId !== null) event.correlationId = rec.correlationId;
    if (rec.causationId !== null) event.causationId = rec.causationId;
    if (rec.traceparent !== null) event.traceparent = rec.traceparent;
    return event;
  }

  return {
    encode(event) {
      const ws = writerOf(event.type, event.schemaVersion);
      if (!ws.type.isValid(event)) throw validationErrorFor(ws, event);
      rejectUndeclaredData(ws.entry, event.data);
      // One write into a reusable scratch buffer, then one exact-size copy: avsc's toBuffer
      // writes everything twice once an event outgrows its 1 KiB internal buffer.
      let end = ws.type.encode(event, scratch, HEADER);
      if (end < 0) {
        const needed = scratch.length - end;
        if (needed > MAX_SCRATCH) {
          const out = Buffer.allocUnsafe(needed);
          ws.header.copy(out, 0);
          ws.type.encode(event, out, HEADER);
          return out;
        }
        scratch = Buffer.allocUnsafe(Math.max(needed, scratch.length * 2));
        end = ws.type.encode(event, scratch, HEADER);
      }
      ws.header.copy(scratch, 0);
      const out = Buffer.allocUnsafe(end);
      scratch.copy(out, 0, 0, end);
      return out;
    },
    decode: (buf) => registry.upcast(decodeAsWritten(buf)),
    decodeAsWritten,
    fingerprintOf: (type, version) => writerOf(type, version).hex,
    fingerprintOfEncoded: (buf) => {
      if (buf.length < HEADER || buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) {
        throw new MalformedEventError('not an Avro single-object encoded event (expected the C3 01 marker and a fingerprint)');
      }
      return fingerprintHex(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(2));
    },
    schemaOfFingerprint(fingerprint) {
      if (!/^[0-9a-f]{16}$/i.test(fingerprint)) return undefined;
      const ws = byFingerprint.get(BigInt(`0x${fingerprint}`));
      return ws && { type: ws.entry.type, schemaVersion: ws.entry.version };
    },
    writerSchemaOf: (type, version) => writerOf(type, version).schema,
  };
}

interface AvroEnvelope {
  eventId: string;
  tenantId: string;
  streamId: string;
  streamPosition: number;
  globalPosition: number;
  occurredAt: Date;
  recordedAt: Date;
  actor: { kind: ActorKind; id: string };
  correlationId: string | null;
  causationId: string | null;
  traceparent: string | null;
  data: Record<string, unknown>;
}

function validationErrorFor(ws: WriterSchema, event: RecordedEvent): ValidationError {
  const problem = findProblem(ws.type, event)!;
  const field = problem.path.length ? problem.path.join('.') : 'event';
  return new ValidationError(`${field}: ${problem.message} (${ws.entry.type} v${ws.entry.version})`, field, {
    field,
    expected: problem.expected,
  });
}

function rejectUndeclaredData(entry: EventSchema, data: EventData): void {
  for (const key in data) {
    if (data[key] !== undefined && !entry.fieldNames.includes(key)) {
      const field = `data.${key}`;
      throw new ValidationError(`${field} is not a field of ${entry.type} v${entry.version}`, field, {
        field,
        reason: 'unknown field',
      });
    }
  }
}

let shared: EventCodec | undefined;

/** The codec over the default schema registry, built once per process. */
export function defaultEventCodec(): EventCodec {
  return (shared ??= createEventCodec());
}

export function encodeEvent(event: RecordedEvent): Buffer {
  return defaultEventCodec().encode(event);
}

export function decodeEvent(buf: Uint8Array): RecordedEvent {
  return defaultEventCodec().decode(buf);
}

export function fingerprintOf(type: string, version: number): string {
  return defaultEventCodec().fingerprintOf(type, version);
}
