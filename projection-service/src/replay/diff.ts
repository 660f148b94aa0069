/**
 * Structural diff of two JSON-like values: what changed from one state to the next, as a flat
 * list of paths (`steps[0].status`). Arrays are compared by index. Pure.
 */
export type Change =
  | { path: string; op: 'added'; after: unknown }
  | { path: string; op: 'removed'; before: unknown }
  | { path: string; op: 'changed'; before: unknown; after: unknown };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

const join = (base: string, key: string | number): string =>
  typeof key === 'number'
    ? `${base}[${key}]`
    : /^[A-Za-z_$][\w$]*$/.test(key)
      ? base
        ? `${base}.${key}`
        : key
      : `${base}[${JSON.stringify(key)}]`;

export function diff(before: unknown, after: unknown, path = ''): Change[] {
  if (Object.is(before, after)) return [];
  if (before instanceof Date && after instanceof Date && before.getTime() === after.getTime()) return [];
  if (isObject(before) && isObject(after)) {
    const out: Change[] = [];
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    for (const k of [...keys].sort()) {
      const p = join(path, k);
      const inB = Object.hasOwn(before, k) && before[k] !== undefined;
      const inA = Object.hasOwn(after, k) && after[k] !== undefined;
      if (inB && !inA) out.push({ path: p, op: 'removed', before: before[k] });
      else if (!inB && inA) out.push({ path: p, op: 'added', after: after[k] });
      else if (inB && inA) out.push(...diff(before[k], after[k], p));
    }
    return out;
  }
  if (Array.isArray(before) && Array.isArray(after)) {
    const out: Change[] = [];
    for (let i = 0; i < Math.max(before.length, after.length); i++) {
      const p = join(path, i);
      if (i >= after.length) out.push({ path: p, op: 'removed', before: before[i] });
      else if (i >= before.length) out.push({ path: p, op: 'added', after: after[i] });
      else out.push(...diff(before[i], after[i], p));
    }
    return out;
  }
  return [{ path: path || '$', op: 'changed', before, after }];
}
