import { describe, expect, it } from 'vitest';
import { isUuid, uuidv7, uuidv7s } from '@keel/shared-events';

/** uuidv7s: the bulk id source of the PostgreSQL store's appends (pure, no server). */
describe('uuidv7s', () => {
  const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('makes distinct RFC 9562 version-7 ids carrying the given millisecond', () => {
    const now = Date.parse('2030-01-02T03:04:05.678Z');
    const ids = uuidv7s(5000, now);
    expect(new Set(ids).size).toBe(5000);
    for (const id of ids) {
      expect(id).toMatch(V7);
      expect(isUuid(id)).toBe(true);
    }
    const ms = parseInt(ids[0]!.replace(/-/g, '').slice(0, 12), 16);
    expect(ms).toBe(now);
  });

  it('keeps creation order with uuidv7(), within one millisecond and across the counter overflow', () => {
    const now = Date.parse('2031-05-06T07:08:09.000Z');
    const ids = [uuidv7(now), ...uuidv7s(3, now), uuidv7(now), ...uuidv7s(6000, now), uuidv7(now + 1), ...uuidv7s(2, now + 1)];
    const sorted = [...ids].sort();
    expect(ids).toEqual(sorted);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('answers an empty list for zero', () => {
    expect(uuidv7s(0)).toEqual([]);
  });
});
