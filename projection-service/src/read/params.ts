import { ValidationError } from '@keel/shared-events';

/**
 * Strict parsing of query-string parameters, shared by the audit and dashboard routes. Every
 * value is checked against a narrow format before it reaches SQL (where it is a bound
 * parameter anyway), so that junk and injection text get a clear 400 naming the parameter.
 */
export type Query = Record<string, unknown>;

export function rejectUnknown(query: Query, allowed: readonly string[]): void {
  const unknown = Object.keys(query).filter((k) => !allowed.includes(k));
  if (unknown.length) {
    throw new ValidationError(
      `unknown query parameter${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`,
      unknown[0],
      {
        field: unknown[0],
        unknown,
        allowed,
      },
    );
  }
}

/** One string value: a repeated parameter (`?a=1&a=2`) is refused rather than guessed at. */
export function single(query: Query, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ValidationError(`${name} must be given once`, name);
  return v;
}

export function matching(query: Query, name: string, re: RegExp, what: string): string | undefined {
  const v = single(query, name);
  if (v === undefined) return undefined;
  if (!re.test(v)) throw new ValidationError(`${name} must be ${what}`, name);
  return v;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

/** An ISO-8601 date (`2024-05-01`, midnight UTC) or date-time with a zone (`...T12:00:00Z`). */
export function instant(query: Query, name: string): Date | undefined {
  const v = single(query, name);
  if (v === undefined) return undefined;
  const m = ISO_RE.exec(v);
  const hasTime = v.includes('T');
  const d = m ? new Date(hasTime ? v : `${v}T00:00:00Z`) : undefined;
  if (!m || !d || Number.isNaN(d.getTime()) || Number(m[1]) < 1970 || (hasTime && !/(Z|[+-]\d{2}:?\d{2})$/.test(v))) {
    throw new ValidationError(
      `${name} must be an ISO-8601 date or date-time with a time zone, e.g. 2024-05-01T12:00:00Z`,
      name,
    );
  }
  return d;
}

export function timeRange(query: Query): { from?: Date; to?: Date } {
  const from = instant(query, 'from');
  const to = instant(query, 'to');
  if (from && to && from.getTime() > to.getTime()) {
    throw new ValidationError('from must not be after to', 'from', {
      field: 'from',
      from: from.toISOString(),
      to: to.toISOString(),
    });
  }
  return { from, to };
}

export function nonNegativeInt(query: Query, name: string): number | undefined {
  const v = single(query, name);
  if (v === undefined) return undefined;
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new ValidationError(`${name} must be a whole number ≥ 0`, name);
  }
  return Number(v);
}

/** Page size: default `def`; larger than `max` is capped to `max` (not refused); 0, negative or junk is a 400. */
export function limit(query: Query, def: number, max: number): number {
  const v = single(query, 'limit');
  if (v === undefined) return def;
  if (!/^\d{1,20}$/.test(v) || Number(v) < 1)
    throw new ValidationError(`limit must be a whole number from 1 (at most ${max} is used)`, 'limit');
  return Math.min(Number(v), max);
}

export function oneOfValues<T extends string>(query: Query, name: string, values: readonly T[]): T | undefined {
  const v = single(query, name);
  if (v === undefined) return undefined;
  if (!(values as readonly string[]).includes(v))
    throw new ValidationError(`${name} must be one of ${values.join(', ')}`, name);
  return v as T;
}

/** Identifiers (ids, names): letters, digits and `._:@/-`, no spaces, quotes or control characters. */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$/;
export const TYPE_RE = /^[A-Za-z][A-Za-z0-9_.]{0,99}$/;
