import { createHash } from 'node:crypto';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  MalformedEventError,
  UnknownSchemaError,
  ValidationError,
  canonicalJson,
  crc64Avro,
  createEventCodec,
  decodeEvent,
  defaultEventCodec,
  defaultSchemaRegistry,
  encodeEvent,
  exampleEventData,
  fingerprintHex,
  fingerprintOf,
  fromJsonEnvelope,
  keelEventTypes,
  toJsonEnvelope,
  uuidv7,
  type KeelEventType,
  type RecordedEvent,
} from '@keel/shared-events';

const registry = defaultSchemaRegistry();
const codec = defaultEventCodec();

function envelope(type: string, data: Record<string, unknown>, overrides: Partial<RecordedEvent> = {}): RecordedEvent {
  return {
    eventId: uuidv7(),
    type,
    schemaVersion: registry.latestVersion(type),
    tenantId: '0190a5c4-7c1e-7000-8000-000000000001',
    streamId: `x-0190a5c4-7c1e-7000-8000-000000000001-${type}`,
    streamPosition: 3,
    globalPosition: 1_234_567_890_123,
    occurredAt: new Date('2024-05-01T12:00:00.123Z'),
    recordedAt: new Date('2024-05-01T12:00:00.456Z'),
    actor: { kind: 'apiKey', id: 'key_01' },
    correlationId: '0190a5c4-7c1e-7000-8000-0000000000c0',
    causationId: '0190a5c4-7c1e-7000-8000-0000000000c1',
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    data,
    ...overrides,
  };
}

const v1Record = (payload: unknown): RecordedEvent =>
  envelope('RecordIngested', { source: 'shop', entityType: 'order', externalId: 'o-1', payload }, { schemaVersion: 1 });

function thrown<E extends Error>(fn: () => unknown, cls: new (...args: never[]) => E): E {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(cls);
    return err as E;
  }
  throw new Error(`expected ${cls.name}, nothing was thrown`);
}

describe('CRC-64-AVRO', () => {
  // Reference values from the Avro specification's algorithm as implemented by linkedin/goavro's tests.
  it('matches known fingerprints', () => {
    expect(fingerprintHex(crc64Avro('"int"'))).toBe('7275d51a3f395c8f');
    expect(fingerprintHex(crc64Avro('"string"'))).toBe('8f014872634503c7');
  });
});

describe('Avro single-object codec', () => {
  it.each(keelEventTypes.map((t) => [t]))('%s round-trips', (type) => {
    const event = envelope(type, exampleEventData[type as KeelEventType]);
    const decoded = decodeEvent(encodeEvent(event));
    expect(decoded).toEqual(event);
  });

  it('round-trips events without the optional envelope and data fields, leaving them absent', () => {
    const event = envelope(
      'WebhookDeliveryFailed',
      { webhookId: 'w', deliveryId: 'd', eventId: 'e', attempt: 1, error: 'timeout' },
      { correlationId: undefined, causationId: undefined, traceparent: undefined, actor: { kind: 'system', id: 'relay' } },
    );
    delete event.correlationId;
    delete event.causationId;
    delete event.traceparent;
    const decoded = decodeEvent(encodeEvent(event));
    expect(decoded).toStrictEqual(event);
    expect(Object.keys(decoded.data).sort()).toEqual(['attempt', 'deliveryId', 'error', 'eventId', 'webhookId']);
    expect('correlationId' in decoded).toBe(false);
  });

  it('gives plain objects and real Dates back', () => {
    const decoded = decodeEvent(encodeEvent(envelope('FlowDefined', exampleEventData.FlowDefined)));
    expect(Object.getPrototypeOf(decoded.data)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(decoded.actor)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(decoded.data['definition'])).toBe(Object.prototype);
    expect(decoded.occurredAt).toBeInstanceOf(Date);
    expect(decoded.occurredAt.toISOString()).toBe('2024-05-01T12:00:00.123Z');
  });

  it('writes C3 01, the little-endian fingerprint of the writer schema, then the Avro body', () => {
    const event = envelope('RecordIngested', exampleEventData.RecordIngested);
    const buf = encodeEvent(event);
    expect([buf[0], buf[1]]).toEqual([0xc3, 0x01]);
    const fp = fingerprintOf('RecordIngested', 2);
    expect(fp).toMatch(/^[0-9a-f]{16}$/);
    expect(Buffer.from(buf.subarray(2, 10)).reverse().toString('hex')).toBe(fp);
    expect(codec.fingerprintOfEncoded(buf)).toBe(fp);
    expect(codec.schemaOfFingerprint(fp)).toEqual({ type: 'RecordIngested', schemaVersion: 2 });
    // The fingerprint is CRC-64-AVRO of the writer schema's Parsing Canonical Form.
    const pcf = JSON.stringify(avro.Type.forSchema(codec.writerSchemaOf('RecordIngested', 2), { wrapUnions: 'never' }).schema());
    expect(pcf).not.toMatch(/logicalType|default|doc/);
    expect(fingerprintHex(crc64Avro(pcf))).toBe(fp);
  });

  it('has one distinct fingerprint per type and version', () => {
    const all = registry.eventTypes().flatMap((t) => registry.versions(t).map((v) => fingerprintOf(t, v)));
    expect(all.length).toBe(keelEventTypes.length + 1);
    expect(new Set(all).size).toBe(all.length);
  });

  it('embeds the data as the type\'s own Avro record encoding', () => {
    const data = exampleEventData.ConnectorInstalled;
    const buf = encodeEvent(envelope('ConnectorInstalled', data));
    const own = registry.schemaOf('ConnectorInstalled', 1).avroType.toBuffer(data);
    expect(buf.subarray(buf.length - own.length).equals(own)).toBe(true);
  });

  it('is readable by a plain Avro reader given the writer schema', () => {
    const event = envelope('StepSucceeded', exampleEventData.StepSucceeded);
    const plain = avro.Type.forSchema(codec.writerSchemaOf('StepSucceeded', 1), { wrapUnions: 'auto' });
    const rec = plain.fromBuffer(encodeEvent(event).subarray(10)) as Record<string, unknown>;
    expect(rec['occurredAt']).toBe(event.occurredAt.getTime());
    expect(JSON.parse((rec['data'] as Record<string, string>)['summary']!)).toEqual(exampleEventData.StepSucceeded.summary);
  });

  it('decodes a RecordIngested v1 as v2, and decodeAsWritten keeps v1', () => {
    const payload = { b: [1, 2], a: 'x' };
    const original = v1Record(payload);
    const buf = encodeEvent(original);
    expect(codec.fingerprintOfEncoded(buf)).toBe(fingerprintOf('RecordIngested', 1));
    const decoded = decodeEvent(buf);
    expect(decoded.schemaVersion).toBe(2);
    expect(decoded.data).toEqual({
      source: 'shop',
      entityType: 'order',
      externalId: 'o-1',
      payload,
      receivedVia: 'api',
      contentHash: createHash('sha256').update('{"a":"x","b":[1,2]}').digest('hex'),
    });
    expect({ ...decoded, schemaVersion: 1, data: original.data }).toEqual(original);
    expect(codec.decodeAsWritten(buf)).toEqual(original);
  });

  it('refuses an unknown fingerprint with UnknownSchemaError naming it', () => {
    const buf = encodeEvent(envelope('TenantCreated', { name: 'Acme' }));
    buf.writeBigUInt64LE(0x0123456789abcdefn, 2);
    const err = thrown(() => decodeEvent(buf), UnknownSchemaError);
    expect(err.fingerprint).toBe('0123456789abcdef');
    expect(err.message).toContain('0123456789abcdef');
    expect(err.code).toBe('UNKNOWN_SCHEMA');
    expect(codec.schemaOfFingerprint('0123456789abcdef')).toBeUndefined();
  });

  it('refuses bytes without the marker, truncated bodies and trailing garbage as MalformedEventError', () => {
    const good = encodeEvent(envelope('TenantCreated', { name: 'Acme' }));
    thrown(() => decodeEvent(Buffer.from('{"type":"TenantCreated"}')), MalformedEventError);
    thrown(() => decodeEvent(good.subarray(0, 6)), MalformedEventError);
    thrown(() => decodeEvent(good.subarray(0, good.length - 3)), MalformedEventError);
    thrown(() => decodeEvent(Buffer.concat([good, Buffer.from([1, 2])])), MalformedEventError);
  });

  it('refuses a JSON field whose text is not JSON (corrupt producer) as MalformedEventError', () => {
    const good = encodeEvent(envelope('FlowDefined', exampleEventData.FlowDefined));
    const plain = avro.Type.forSchema(codec.writerSchemaOf('FlowDefined', 1), { wrapUnions: 'never' });
    const rec = plain.fromBuffer(good.subarray(10)) as { data: { definition: string } };
    rec.data.definition = '{not json';
    const bad = Buffer.concat([good.subarray(0, 10), plain.toBuffer(rec)]);
    const err = thrown(() => decodeEvent(bad), MalformedEventError);
    expect(err.message).toMatch(/FlowDefined v1/);
  });

  it('refuses a field of the wrong type with a ValidationError naming it, in data and in the envelope', () => {
    const data = { ...exampleEventData.RecordIngested, externalId: 1001 };
    expect(thrown(() => encodeEvent(envelope('RecordIngested', data)), ValidationError).field).toBe('data.externalId');
    const nested = { ...exampleEventData.RecordIngested, payload: { lines: [{ at: new Date() }] } };
    expect(thrown(() => encodeEvent(envelope('RecordIngested', nested)), ValidationError).field).toBe('data.payload.lines.0.at');
    const extra = { ...exampleEventData.TenantCreated, plan: 'gold' };
    expect(thrown(() => encodeEvent(envelope('TenantCreated', extra)), ValidationError).field).toBe('data.plan');
    const env = (o: Partial<RecordedEvent>) => encodeEvent(envelope('TenantCreated', { name: 'x' }, o));
    expect(thrown(() => env({ occurredAt: '2024-01-01' as never }), ValidationError).field).toBe('occurredAt');
    expect(thrown(() => env({ globalPosition: '12' as never }), ValidationError).field).toBe('globalPosition');
    expect(thrown(() => env({ actor: { kind: 'robot', id: 'x' } as never }), ValidationError).field).toBe('actor.kind');
    expect(thrown(() => env({ correlationId: 5 as never }), ValidationError).field).toBe('correlationId');
    expect(thrown(() => env({ type: 'Nope' }), ValidationError).field).toBe('type');
    expect(thrown(() => env({ schemaVersion: 9 }), ValidationError).field).toBe('schemaVersion');
    expect(thrown(() => fingerprintOf('TenantCreated', 2), ValidationError).field).toBe('schemaVersion');
  });

  it('round-trips big payloads: a 1.5 MB record with deep nesting and non-ASCII text', () => {
    const lines = Array.from({ length: 5_000 }, (_, i) => ({
      sku: `SKU-${i}`,
      name: `Ärmel ✓ 製品 ${i} ${'x'.repeat(i % 300)}`,
      qty: i % 7,
      price: i / 3,
      tags: [String(i), null, i % 2 === 0],
      nested: { level: { deeper: { deepest: [i, { k: 'v' }] } } },
    }));
    const payload = { orderId: 'o-big', lines, emoji: '🚀🔥', empty: {}, list: [] };
    const data = { ...exampleEventData.RecordIngested, payload, contentHash: createHash('sha256').update(canonicalJson(payload)).digest('hex') };
    const event = envelope('RecordIngested', data);
    const buf = encodeEvent(event);
    expect(buf.length).toBeGreaterThan(1_500_000);
    expect(decodeEvent(buf)).toEqual(event);
  });

  it('keeps earlier outputs intact across encodes, including one bigger than the scratch buffer cap', () => {
    const huge = envelope('RecordIngested', { ...exampleEventData.RecordIngested, payload: { blob: 'ü'.repeat(3_000_000) } });
    const small = envelope('TenantCreated', { name: 'Acme' });
    const a = encodeEvent(huge);
    const b = encodeEvent(small);
    const c = encodeEvent(huge);
    expect(a.length).toBeGreaterThan(6_000_000);
    expect(a.equals(c)).toBe(true);
    expect(decodeEvent(b)).toEqual(small);
    expect(decodeEvent(a)).toEqual(huge);
  });

  it('round-trips a long list in a non-json field and a batch of mixed events', () => {
    const eventTypes = Array.from({ length: 10_000 }, (_, i) => `Type${i}`);
    const reg = envelope('WebhookEndpointRegistered', { ...exampleEventData.WebhookEndpointRegistered, eventTypes });
    expect(decodeEvent(encodeEvent(reg))).toEqual(reg);
    const batch = Array.from({ length: 2_000 }, (_, i) => {
      const type = keelEventTypes[i % keelEventTypes.length]!;
      return envelope(type, exampleEventData[type], { globalPosition: i + 1, streamPosition: i });
    });
    const bufs = batch.map(encodeEvent);
    expect(bufs.map(decodeEvent)).toEqual(batch);
  });

  it('a codec over another registry refuses events it does not know', () => {
    const other = createEventCodec(registry);
    expect(other.fingerprintOf('TenantCreated', 1)).toBe(fingerprintOf('TenantCreated', 1));
    expect(thrown(() => other.encode(envelope('Nope', {})), ValidationError).field).toBe('type');
  });
});

describe('JSON envelopes', () => {
  it('writes instants as ISO strings and positions as numbers', () => {
    const event = envelope('TenantCreated', { name: 'Acme' });
    const json = toJsonEnvelope(event);
    expect(json).toEqual({ ...event, occurredAt: '2024-05-01T12:00:00.123Z', recordedAt: '2024-05-01T12:00:00.456Z' });
    expect(typeof json.globalPosition).toBe('number');
  });

  it.each(keelEventTypes.map((t) => [t]))('%s round-trips through JSON text', (type) => {
    const event = envelope(type, exampleEventData[type as KeelEventType]);
    const back = fromJsonEnvelope(JSON.parse(JSON.stringify(toJsonEnvelope(event))));
    expect(back).toEqual(event);
  });

  it('leaves absent optional fields out of the JSON', () => {
    const event = envelope('TenantCreated', { name: 'Acme' });
    delete event.traceparent;
    expect('traceparent' in toJsonEnvelope(event)).toBe(false);
    expect(fromJsonEnvelope(toJsonEnvelope(event))).toStrictEqual(event);
  });

  it('upcasts an old version read from JSON', () => {
    const json = JSON.parse(JSON.stringify(toJsonEnvelope(v1Record({ a: 1 })))) as unknown;
    const event = fromJsonEnvelope(json);
    expect(event.schemaVersion).toBe(2);
    expect(event.data).toMatchObject({ receivedVia: 'api', contentHash: createHash('sha256').update('{"a":1}').digest('hex') });
  });

  it('names the offending field of a bad JSON envelope', () => {
    const good = toJsonEnvelope(envelope('RecordIngested', exampleEventData.RecordIngested));
    const bad = (patch: Record<string, unknown>) =>
      thrown(() => fromJsonEnvelope({ ...good, ...patch }), ValidationError).field;
    expect(bad({ occurredAt: 'yesterday' })).toBe('occurredAt');
    expect(bad({ occurredAt: 1714564800000 })).toBe('occurredAt');
    expect(bad({ globalPosition: '5' })).toBe('globalPosition');
    expect(bad({ streamPosition: -1 })).toBe('streamPosition');
    expect(bad({ actor: { kind: 'robot', id: 'x' } })).toBe('actor.kind');
    expect(bad({ actor: { kind: 'user' } })).toBe('actor.id');
    expect(bad({ type: 'Nope' })).toBe('type');
    expect(bad({ schemaVersion: 3 })).toBe('schemaVersion');
    expect(bad({ data: { ...good.data, externalId: 5 } })).toBe('data.externalId');
    expect(bad({ data: 'text' })).toBe('data');
    expect(thrown(() => fromJsonEnvelope([good]), ValidationError).field).toBe('event');
  });
});
