import { canonicalHash } from '@keel/shared-events';
import { describe, expect, it } from 'vitest';
import { parseRecordLine, recordEvent, validateRecord } from '../../src/ingest/records.ts';

const good = { source: 'crm', entityType: 'contact', externalId: 'c-42', payload: { name: 'Ada', tags: ['x'] } };

describe('record validation', () => {
  it('accepts a well-formed record and builds its RecordIngested v2 event', () => {
    const r = validateRecord({ ...good, occurredAt: '2024-05-01T12:00:00Z' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const { streamId, event } = recordEvent(r.record, { tenantId: 't1', actor: { kind: 'apiKey', id: 'k' }, receivedVia: 'api', correlationId: 'c' });
    expect(streamId).toBe('record-t1-contact-c-42');
    expect(event).toMatchObject({
      type: 'RecordIngested',
      schemaVersion: 2,
      tenantId: 't1',
      occurredAt: new Date('2024-05-01T12:00:00Z'),
      correlationId: 'c',
      data: { source: 'crm', entityType: 'contact', externalId: 'c-42', receivedVia: 'api', contentHash: canonicalHash(good.payload) },
    });
    // key order does not change the content hash
    const again = validateRecord({ ...good, payload: { tags: ['x'], name: 'Ada' } });
    expect(again.ok && recordEvent(again.record, { tenantId: 't1', actor: { kind: 'apiKey', id: 'k' }, receivedVia: 'api' }).event.data.contentHash).toBe(
      event.data.contentHash,
    );
  });

  const cases: [string, unknown, string, RegExp][] = [
    ['not an object', [1, 2], 'NOT_AN_OBJECT', /JSON object/],
    ['null', null, 'NOT_AN_OBJECT', /JSON object/],
    ['unknown field', { ...good, extra: 1 }, 'UNKNOWN_FIELD', /extra/],
    ['missing source', { ...good, source: undefined }, 'MISSING_FIELD', /source/],
    ['missing payload', { ...good, payload: undefined }, 'MISSING_FIELD', /payload/],
    ['wrong type', { ...good, externalId: 42 }, 'INVALID_FIELD', /externalId must be a string/],
    ['payload not an object', { ...good, payload: 'x' }, 'INVALID_FIELD', /payload must be a JSON object/],
    ['dash in entityType', { ...good, entityType: 'a-b' }, 'INVALID_FIELD', /entityType/],
    ['SQL in externalId', { ...good, externalId: "1'; DROP TABLE keel_events; --" }, 'INVALID_FIELD', /externalId/],
    ['path in externalId', { ...good, externalId: '../../etc/passwd' }, 'INVALID_FIELD', /externalId/],
    ['script in source', { ...good, source: '<script>alert(1)</script>' }, 'INVALID_FIELD', /source/],
    ['template in entityType', { ...good, entityType: '${jndi:ldap://x}' }, 'INVALID_FIELD', /entityType/],
    ['bad date', { ...good, occurredAt: 'yesterday' }, 'INVALID_FIELD', /occurredAt/],
    ['date without zone', { ...good, occurredAt: '2024-05-01T12:00:00' }, 'INVALID_FIELD', /occurredAt/],
    ['NUL in payload', { ...good, payload: { a: 'x\u0000y' } }, 'INVALID_FIELD', /NUL/],
    ['NUL in payload key', { ...good, payload: { ['k\u0000']: 1 } }, 'INVALID_FIELD', /NUL/],
    ['lone surrogate', { ...good, payload: { a: ['\ud800'] } }, 'INVALID_FIELD', /surrogate/],
  ];
  it.each(cases)('rejects %s', (_name, value, code, message) => {
    const r = validateRecord(JSON.parse(JSON.stringify(value)));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.rejection.code).toBe(code);
    expect(r.rejection.message).toMatch(message);
  });

  it('rejects payloads nested too deeply', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = { d: deep };
    const r = validateRecord({ ...good, payload: deep });
    expect(r.ok ? 'ok' : r.rejection.message).toMatch(/nested deeper/);
  });

  it('keeps injection text in the payload as plain data', () => {
    const payload = { note: "'; DROP TABLE keel_events; -- <script>alert(1)</script> {{7*7}} ${x}" };
    const r = validateRecord({ ...good, payload });
    expect(r.ok && r.record.payload).toEqual(payload);
  });

  it('reports invalid JSON lines', () => {
    const r = parseRecordLine('{"source": "crm",');
    expect(r.ok ? 'ok' : r.rejection.code).toBe('INVALID_JSON');
  });
});

describe('fast UUIDv7 for ingest', async () => {
  const { fastUuidv7 } = await import('../../src/ingest/ids.ts');
  const { isUuid } = await import('@keel/shared-events');
  it('makes valid, unique, time-ordered version 7 ids', () => {
    const ids = Array.from({ length: 20_000 }, () => fastUuidv7());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids.slice(0, 500)) {
      expect(isUuid(id)).toBe(true);
      expect(id[14]).toBe('7');
      expect('89ab').toContain(id[19]);
    }
    expect([...ids].sort()).toEqual(ids); // monotonic, also within one millisecond
    const t = Date.UTC(2030, 0, 1);
    expect(fastUuidv7(t).slice(0, 13).replace('-', '')).toBe(t.toString(16).padStart(12, '0'));
  });
});

describe('canonical payload JSON (the key-sorting fast path)', async () => {
  const { canonicalJson } = await import('@keel/shared-events');
  // A small deterministic generator of arbitrary JSON (what JSON.parse can produce).
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const pick = <T,>(xs: T[]) => xs[Math.floor(rnd() * xs.length)]!;
  const keyPool = ['a', 'b', 'B', 'z', '10', '9', '1', '_', 'é', 'ä', '😀', '__proto__', 'toJSON', 'constructor', '', ' ', 'aa', 'a-b', 'Zeta'];
  const strings = ['', 'x', 'quote"back\\slash', 'line\nbreak\ttab', 'uni ✓ 😀', '\u2028\u2029', '\u001f'];
  /** Objects are built as entry lists (Obj), so duplicate keys and "__proto__" reach the text as such. */
  class Obj {
    constructor(readonly entries: [string, unknown][]) {}
  }
  function toText(v: unknown): string {
    if (v instanceof Obj) return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${toText(x)}`).join(',')}}`;
    if (Array.isArray(v)) return `[${v.map(toText).join(',')}]`;
    return JSON.stringify(v);
  }
  function value(depth: number): unknown {
    const r = rnd();
    if (depth > 4 || r < 0.3) return pick<unknown>([null, true, false, 0, -0, 1.5, -2e-7, 1e21, 123456789012, ...strings]);
    if (r < 0.55) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
    const entries: [string, unknown][] = [];
    for (let i = Math.floor(rnd() * 6); i > 0; i--) entries.push([pick(keyPool), value(depth + 1)]);
    return new Obj(entries);
  }
  it('equals canonicalJson on 3000 arbitrary parsed JSON payloads, and the event\'s dataJson is its data', () => {
    let checked = 0;
    let fast = 0;
    for (let i = 0; i < 3000; i++) {
      // built as text so that "__proto__" becomes an own property, as JSON.parse makes it
      const text = toText(new Obj([['root', value(0)], [pick(keyPool), value(1)]]));
      const payload = JSON.parse(text) as Record<string, unknown>;
      const expected = canonicalJson(payload);
      const r = validateRecord({ ...good, payload });
      if (!r.ok) continue;
      checked++;
      // the fast path: the payload came back key-sorted and its plain JSON is the canonical text
      if (JSON.stringify(r.record.payload) === expected) fast++;
      expect(r.record.payloadJson).toBe(expected);
      expect(canonicalJson(r.record.payload)).toBe(expected); // reordered, never changed
      expect(canonicalJson(JSON.parse(text))).toBe(expected);
      const e = recordEvent(r.record, { tenantId: 't', actor: { kind: 'apiKey', id: 'k' }, receivedVia: 'api' });
      expect(e.event.data.contentHash).toBe(canonicalHash(payload));
      expect(JSON.parse(e.event.dataJson!)).toEqual(JSON.parse(JSON.stringify(e.event.data)));
      expect(Object.keys(JSON.parse(e.event.dataJson!))).toEqual(Object.keys(e.event.data));
    }
    expect(checked).toBeGreaterThan(2500);
    expect(fast).toBeGreaterThan(1000); // the fast path was really exercised
  });

  it('sorts keys at every level, copying only unsorted objects', () => {
    const inner = { a: 1, b: 2 };
    const r = validateRecord({ ...good, payload: { b: 1, a: { b: [{ b: 2, a: 3 }], a: null }, c: inner } });
    expect(r.ok && r.record.payloadJson).toBe('{"a":{"a":null,"b":[{"a":3,"b":2}]},"b":1,"c":{"a":1,"b":2}}');
    expect(r.ok && JSON.stringify(r.record.payload)).toBe(r.ok && r.record.payloadJson);
    expect(r.ok && (r.record.payload.c as unknown)).toBe(inner);
  });

  it('falls back to canonicalJson for integer-like keys and "__proto__"', () => {
    for (const text of ['{"b":{"10":1,"9":2,"x":3},"a":0}', '{"z":1,"__proto__":{"y":1,"x":2},"a":[{"d":1,"c":2}]}']) {
      const payload = JSON.parse(text) as Record<string, unknown>;
      const r = validateRecord({ ...good, payload });
      expect(r.ok && r.record.payloadJson).toBe(canonicalJson(JSON.parse(text)));
      expect(r.ok && Object.getPrototypeOf(r.record.payload)).toBe(Object.prototype);
    }
  });
});
