import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ValidationError,
  canonicalHash,
  canonicalJson,
  categoryOfEventType,
  createSchemaRegistry,
  defaultSchemaDir,
  eventTypesByCategory,
  exampleEventData,
  keelEventTypes,
  upcasters,
  type RecordedEvent,
  type Upcaster,
} from '@keel/shared-events';

const registry = createSchemaRegistry();

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError, nothing was thrown');
}

const order = {
  source: 'shop',
  entityType: 'order',
  externalId: 'o-1',
  payload: { total: 10, lines: [{ sku: 'A', qty: 1 }] },
  receivedVia: 'api',
  contentHash: 'ab'.repeat(32),
};

function recordedV1(payload: unknown): RecordedEvent {
  return {
    eventId: '0190a5c4-7c1e-7000-8000-000000000001',
    type: 'RecordIngested',
    schemaVersion: 1,
    tenantId: 't1',
    streamId: 'record-t1-order-o-1',
    streamPosition: 0,
    globalPosition: 7,
    occurredAt: new Date('2024-05-01T12:00:00.000Z'),
    recordedAt: new Date('2024-05-01T12:00:00.005Z'),
    actor: { kind: 'apiKey', id: 'key_01' },
    data: { source: 'shop', entityType: 'order', externalId: 'o-1', payload },
  };
}

describe('the catalogue', () => {
  it('registers exactly the catalogue types, each in one stream category', () => {
    expect(registry.eventTypes()).toEqual([...keelEventTypes].sort());
    expect(Object.keys(exampleEventData).sort()).toEqual([...keelEventTypes].sort());
    expect(new Set(keelEventTypes).size).toBe(keelEventTypes.length);
    expect(categoryOfEventType('RecordIngested')).toBe('record');
    expect(categoryOfEventType('StepRetryScheduled')).toBe('run');
    expect(categoryOfEventType('AccessDenied')).toBe('access');
    expect(categoryOfEventType('NoSuchThing')).toBeUndefined();
    expect(Object.keys(eventTypesByCategory).sort()).toEqual(
      ['access', 'connector', 'flow', 'record', 'run', 'source', 'tenant', 'webhook'].sort(),
    );
  });

  it('knows the versions: RecordIngested has v1 and v2, the rest v1', () => {
    expect(registry.versions('RecordIngested')).toEqual([1, 2]);
    expect(registry.latestVersion('RecordIngested')).toBe(2);
    for (const type of keelEventTypes.filter((t) => t !== 'RecordIngested')) {
      expect(registry.latestVersion(type), type).toBe(1);
    }
  });

  it.each(keelEventTypes.map((t) => [t]))('%s: the example validates and sets every schema field', (type) => {
    const data = exampleEventData[type];
    const schema = registry.schemaOf(type, registry.latestVersion(type));
    expect(() => registry.validate(type, schema.version, data)).not.toThrow();
    expect(Object.keys(data).sort()).toEqual([...schema.fieldNames].sort());
  });

  it('optional fields may be absent (or null, as JSON clients send them), required ones may not', () => {
    expect(() => registry.validate('AccessDenied', 1, { method: 'GET', path: '/x', reason: 'no key' })).not.toThrow();
    expect(() =>
      registry.validate('AccessDenied', 1, { keyId: null, method: 'GET', path: '/x', reason: 'no key' }),
    ).not.toThrow();
    expect(() =>
      registry.validate('WebhookDeliveryFailed', 1, {
        webhookId: 'w',
        deliveryId: 'd',
        eventId: 'e',
        attempt: 1,
        error: 'timeout',
      }),
    ).not.toThrow();
    const err = validationError(() => registry.validate('AccessDenied', 1, { method: 'GET', reason: 'no key' }));
    expect(err.field).toBe('data.path');
    expect(err.message).toMatch(/required/);
  });
});

describe('validate', () => {
  it('names the offending field for a value of the wrong type', () => {
    const err = validationError(() => registry.validate('RecordIngested', 2, { ...order, externalId: 42 }));
    expect(err.field).toBe('data.externalId');
    expect(err.code).toBe('VALIDATION_FAILED');
    expect(err.details).toMatchObject({ field: 'data.externalId' });
    expect(err.message).toContain('data.externalId');
  });

  it('names the field inside a JSON value that is not JSON', () => {
    const payload = { lines: [{ sku: 'A' }, { sku: 'B', when: new Date() }] };
    const err = validationError(() => registry.validate('RecordIngested', 2, { ...order, payload }));
    expect(err.field).toBe('data.payload.lines.1.when');
    const nan = validationError(() => registry.validate('StepSucceeded', 1, { ...exampleEventData.StepSucceeded, summary: { ms: NaN } }));
    expect(nan.field).toBe('data.summary.ms');
  });

  it('accepts any JSON value in a json field, including null and scalars', () => {
    for (const payload of [null, 0, 'text', true, [], [1, [2, { a: null }]], { deep: { deeper: { deepest: ['x'] } } }]) {
      expect(() => registry.validate('RecordIngested', 2, { ...order, payload }), JSON.stringify(payload)).not.toThrow();
    }
  });

  it('checks enums, 32-bit ints, ISO date-times, array items and optional unions', () => {
    expect(validationError(() => registry.validate('RecordIngested', 2, { ...order, receivedVia: 'email' })).field).toBe(
      'data.receivedVia',
    );
    expect(
      validationError(() => registry.validate('StepFailed', 1, { ...exampleEventData.StepFailed, attempt: 1.5 })).field,
    ).toBe('data.attempt');
    expect(
      validationError(() => registry.validate('StepFailed', 1, { ...exampleEventData.StepFailed, stepIndex: 2 ** 31 })).field,
    ).toBe('data.stepIndex');
    expect(
      validationError(() =>
        registry.validate('StepRetryScheduled', 1, { ...exampleEventData.StepRetryScheduled, retryAt: 'tomorrow' }),
      ).field,
    ).toBe('data.retryAt');
    expect(
      validationError(() =>
        registry.validate('WebhookEndpointRegistered', 1, { ...exampleEventData.WebhookEndpointRegistered, eventTypes: ['A', 7] }),
      ).field,
    ).toBe('data.eventTypes.1');
    expect(validationError(() => registry.validate('WebhookEndpointUpdated', 1, { webhookId: 'w', url: 5 })).field).toBe(
      'data.url',
    );
    expect(validationError(() => registry.validate('UserInvited', 1, { ...exampleEventData.UserInvited, role: 'root' })).field).toBe(
      'data.role',
    );
  });

  it('refuses a field the schema does not declare (Avro would drop it silently)', () => {
    const err = validationError(() => registry.validate('RecordIngested', 2, { ...order, extra: 1 }));
    expect(err.field).toBe('data.extra');
  });

  it('refuses data that is not an object', () => {
    expect(validationError(() => registry.validate('TenantReinstated', 1, [] as never)).field).toBe('data');
    expect(validationError(() => registry.validate('TenantReinstated', 1, null as never)).field).toBe('data');
  });

  it('refuses an unknown type on "type" and an unknown version on "schemaVersion"', () => {
    expect(validationError(() => registry.validate('OrderShipped', 1, {})).field).toBe('type');
    expect(validationError(() => registry.latestVersion('OrderShipped')).field).toBe('type');
    expect(validationError(() => registry.validate('TenantCreated', 2, { name: 'x' })).field).toBe('schemaVersion');
    expect(validationError(() => registry.validate('RecordIngested', 0, order)).field).toBe('schemaVersion');
  });

  it('validates the old version against its own schema', () => {
    const v1 = { source: 's', entityType: 'e', externalId: 'x', payload: {} };
    expect(() => registry.validate('RecordIngested', 1, v1)).not.toThrow();
    expect(validationError(() => registry.validate('RecordIngested', 1, { ...v1, receivedVia: 'api' })).field).toBe(
      'data.receivedVia',
    );
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order, writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, { z: 1, y: 2 }], c: 'x y' } })).toBe(
      '{"a":{"c":"x y","d":[3,1,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('gives the same text for the same value whatever the key order', () => {
    expect(canonicalJson({ x: 1, y: [{ q: 1, p: 2 }] })).toBe(canonicalJson({ y: [{ p: 2, q: 1 }], x: 1 }));
  });

  it('writes scalars, escapes and non-ASCII keys as JSON does, sorted by code unit', () => {
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson('a"b\n')).toBe('"a\\"b\\n"');
    expect(canonicalJson(1e21)).toBe('1e+21');
    expect(canonicalJson(-0.5)).toBe('-0.5');
    expect(canonicalJson({ é: 1, z: 2, A: 3, '€': 4 })).toBe('{"A":3,"z":2,"é":1,"€":4}');
  });

  it('follows JSON.stringify for Dates, undefined and non-finite numbers', () => {
    expect(canonicalJson({ at: new Date(0), gone: undefined, n: Infinity, list: [undefined] })).toBe(
      '{"at":"1970-01-01T00:00:00.000Z","list":[null],"n":null}',
    );
  });

  it('throws on BigInt and on cycles', () => {
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cyclic/);
    const shared = { a: 1 };
    expect(canonicalJson([shared, shared])).toBe('[{"a":1},{"a":1}]');
  });

  it('canonicalHash is the sha-256 hex of the canonical text', () => {
    const text = '{"a":1,"b":[true,null]}';
    expect(canonicalHash({ b: [true, null], a: 1 })).toBe(createHash('sha256').update(text).digest('hex'));
  });
});

describe('upcasting RecordIngested v1 → v2', () => {
  it('fills receivedVia=api and contentHash from the canonical payload', () => {
    const v1 = recordedV1({ total: 10, lines: [{ sku: 'A', qty: 1 }] });
    const v2 = registry.upcast(v1);
    const expectedHash = createHash('sha256').update('{"lines":[{"qty":1,"sku":"A"}],"total":10}').digest('hex');
    expect(v2).toEqual({
      ...v1,
      schemaVersion: 2,
      data: { ...v1.data, receivedVia: 'api', contentHash: expectedHash },
    });
    expect(() => registry.validate('RecordIngested', 2, v2.data)).not.toThrow();
  });

  it('hashes equal payloads equally whatever their key order, and different payloads differently', () => {
    const a = registry.upcast(recordedV1({ x: 1, y: { p: [1, 2], q: 'z' } }));
    const b = registry.upcast(recordedV1({ y: { q: 'z', p: [1, 2] }, x: 1 }));
    const c = registry.upcast(recordedV1({ y: { q: 'z', p: [2, 1] }, x: 1 }));
    expect(a.data['contentHash']).toBe(b.data['contentHash']);
    expect(a.data['contentHash']).not.toBe(c.data['contentHash']);
  });

  it('leaves the input untouched and returns the same object when already newest', () => {
    const v1 = recordedV1({ a: 1 });
    const before = structuredClone(v1);
    registry.upcast(v1);
    expect(v1).toEqual(before);
    const v2 = registry.upcast(v1);
    expect(registry.upcast(v2)).toBe(v2);
    const other = { ...v1, type: 'TenantCreated', schemaVersion: 1, data: { name: 'x' } };
    expect(registry.upcast(other)).toBe(other);
  });

  it('upcastData works on bare data, and a version newer than this code knows is refused', () => {
    const up = registry.upcastData('RecordIngested', 1, { source: 's', entityType: 'e', externalId: 'x', payload: 'hi' });
    expect(up.schemaVersion).toBe(2);
    expect(up.data['contentHash']).toBe(createHash('sha256').update('"hi"').digest('hex'));
    expect(validationError(() => registry.upcast({ ...recordedV1({}), schemaVersion: 3 })).field).toBe('schemaVersion');
    expect(validationError(() => registry.upcast({ ...recordedV1({}), type: 'Nope' })).field).toBe('type');
  });

  it('the built-in upcasters cover every old version', () => {
    expect(upcasters.map((u) => `${u.type}@${u.fromVersion}`)).toEqual(['RecordIngested@1']);
  });
});

describe('a registry over another schema folder', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  function schemaDirWith(extra: Record<string, unknown>, drop: string[] = []): string {
    const dir = mkdtempSync(join(tmpdir(), 'keel-schemas-'));
    dirs.push(dir);
    for (const f of readdirSync(defaultSchemaDir)) if (!drop.includes(f)) copyFileSync(join(defaultSchemaDir, f), join(dir, f));
    for (const [name, schema] of Object.entries(extra)) writeFileSync(join(dir, name), JSON.stringify(schema));
    return dir;
  }

  const v3 = {
    type: 'record',
    name: 'RecordIngested',
    namespace: 'keel.events',
    fields: [
      { name: 'source', type: 'string' },
      { name: 'entityType', type: 'string' },
      { name: 'externalId', type: 'string' },
      { name: 'payload', type: { type: 'string', logicalType: 'json' } },
      { name: 'receivedVia', type: { type: 'enum', name: 'ReceivedVia', symbols: ['api', 'webhook'] } },
      { name: 'contentHash', type: 'string' },
      { name: 'sizeBytes', type: 'long' },
    ],
  };
  const v2ToV3: Upcaster = {
    type: 'RecordIngested',
    fromVersion: 2,
    up: (data) => ({ ...data, sizeBytes: Buffer.byteLength(canonicalJson(data['payload'])) }),
  };

  it('chains upcasters from the oldest version to the newest', () => {
    const reg = createSchemaRegistry({ schemaDir: schemaDirWith({ 'RecordIngested.v3.avsc': v3 }), upcasters: [...upcasters, v2ToV3] });
    expect(reg.latestVersion('RecordIngested')).toBe(3);
    const out = reg.upcast(recordedV1({ b: 'é', a: 1 }));
    expect(out.schemaVersion).toBe(3);
    expect(out.data).toMatchObject({ receivedVia: 'api', sizeBytes: Buffer.byteLength('{"a":1,"b":"é"}') });
    expect(() => reg.validate('RecordIngested', 3, out.data)).not.toThrow();
  });

  it('refuses to start with an old version lacking its upcaster', () => {
    expect(() => createSchemaRegistry({ schemaDir: schemaDirWith({ 'RecordIngested.v3.avsc': v3 }) })).toThrow(
      /RecordIngested v2 has no upcaster/,
    );
  });

  it('refuses a gap in the versions, a misnamed file and a record named unlike its file', () => {
    expect(() =>
      createSchemaRegistry({ schemaDir: schemaDirWith({}, ['RecordIngested.v1.avsc']), upcasters: [] }),
    ).not.toThrow();
    expect(() =>
      createSchemaRegistry({ schemaDir: schemaDirWith({ 'RecordIngested.v4.avsc': v3 }), upcasters }),
    ).toThrow(/version 3 is missing/);
    expect(() => createSchemaRegistry({ schemaDir: schemaDirWith({ 'recordIngested-v3.avsc': v3 }) })).toThrow(
      /<Type>\.v<version>\.avsc/,
    );
    expect(() => createSchemaRegistry({ schemaDir: schemaDirWith({ 'Other.v1.avsc': v3 }) })).toThrow(/record name must be Other/);
  });

  it('refuses an upcaster for versions that do not exist', () => {
    expect(() => createSchemaRegistry({ upcasters: [...upcasters, v2ToV3] })).toThrow(/no such schema versions/);
  });
});
