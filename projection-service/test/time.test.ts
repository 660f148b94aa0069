import { describe, expect, it } from 'vitest';
import { isoTime } from '../src/audit/time.ts';

describe('isoTime', () => {
  const year0 = new Date('0000-01-01T00:00:00.000Z').getTime();
  const year10000 = new Date('+010000-01-01T00:00:00.000Z').getTime();

  it.each([
    0,
    -1,
    1,
    86_399_999,
    86_400_000,
    Date.parse('2024-02-29T23:59:59.999Z'),
    Date.parse('2100-03-01T00:00:00.000Z'),
    Date.parse('2000-02-29T12:00:00.000Z'),
    Date.parse('1900-02-28T23:59:59.999Z'),
    Date.parse('1969-12-31T23:59:59.999Z'),
    year0,
    year0 - 1, // -000001-12-31: toISOString's extended year format
    year10000 - 1,
    year10000, // +010000: extended year format
    8.64e15,
    -8.64e15,
  ])('%d is written as toISOString writes it', (t) => {
    const d = new Date(t);
    expect(isoTime(d)).toBe(d.toISOString());
  });

  it('matches toISOString on random times from year 0 to 9999, in and out of its day cache', () => {
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 20_000; i++) {
      // Half far apart (a new day each time), half within a few hours of the previous one.
      const t =
        i % 2 ? year0 + Math.floor(rnd() * (year10000 - year0)) : Date.UTC(2025, 0, 1) + Math.floor(rnd() * 4e7);
      const d = new Date(t);
      expect(isoTime(d)).toBe(d.toISOString());
    }
  });

  it('throws on an invalid date like toISOString', () => {
    expect(() => isoTime(new Date(Number.NaN))).toThrow(RangeError);
  });
});
