import { describe, expect, it } from 'vitest';
import { canonicalJson } from '@keel/shared-events';
import { fastCanonicalJson } from '../src/audit/canonical.ts';

describe('fastCanonicalJson', () => {
  const cases: unknown[] = [
    null,
    0,
    -0,
    1.5e300,
    Number.NaN,
    'plain',
    'quotes " and \\ and \n and \u2028 and emoji 😀 and lone \ud800',
    [],
    {},
    { b: 1, a: 2, A: 3, _: 4, ä: 5, '': 6 },
    { z: { y: [3, { d: 1, c: undefined, b: null }], x: 'x' }, a: [[], {}] },
    { 10: 'ten', 9: 'nine', b: 'bee' }, // array-index keys: the engine would reorder them
    { '01': 'not an index', 1: 'index' },
    JSON.parse('{"__proto__": {"polluted": true}, "a": 1}'),
    { when: new Date('2025-03-01T00:00:00Z'), nested: { at: new Date(0) } }, // toJSON
    { fn: () => 1, sym: Symbol('s'), kept: true },
    Object.assign(Object.create(null) as object, { b: 2, a: 1 }),
    { deep: JSON.parse('['.repeat(80) + '1' + ']'.repeat(80)) },
    { surrogates: { '\ud83d\ude00': 1, '\uffff': 2, z: 3 } },
  ];
  it.each(cases.map((c, i) => [i, c]))('case %i matches the reference', (_i, value) => {
    expect(fastCanonicalJson(value)).toBe(canonicalJson(value));
  });

  it('matches on random event-like data', () => {
    let seed = 42;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const gen = (depth: number): unknown => {
      const r = rnd();
      if (depth > 3 || r < 0.3)
        return r < 0.1 ? null : r < 0.2 ? Math.floor(rnd() * 1e6) - 5e5 : `s${Math.floor(rnd() * 1e4)}`;
      if (r < 0.5) return Array.from({ length: Math.floor(rnd() * 4) }, () => gen(depth + 1));
      const o: Record<string, unknown> = {};
      for (let i = 0; i < 1 + Math.floor(rnd() * 6); i++)
        o[String.fromCharCode(65 + Math.floor(rnd() * 58)) + Math.floor(rnd() * 3)] = gen(depth + 1);
      return o;
    };
    for (let i = 0; i < 2000; i++) {
      const v = gen(0);
      expect(fastCanonicalJson(v)).toBe(canonicalJson(v));
    }
  });
});
