import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted (by UTF-16 code units, as RFC 8785 does), no whitespace,
 * strings and numbers as JSON.stringify writes them. Two structurally equal values give the same
 * text whatever their key order, so it is what content hashes and the audit hash chain hash.
 *
 * Follows JSON.stringify for what JSON cannot hold: `toJSON` is honoured (Dates become ISO
 * strings), undefined/function/symbol properties are left out (`null` inside arrays), and
 * non-finite numbers become `null`. BigInts and cycles throw TypeError.
 */
export function canonicalJson(value: unknown): string {
  const out = write(value, new Set());
  if (out === undefined) throw new TypeError('canonicalJson: value is not serializable to JSON');
  return out;
}

/** sha-256 hex of `canonicalJson(value)`. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('hex');
}

function write(value: unknown, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('canonicalJson: BigInt is not JSON');
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
  }
  if (value === null) return 'null';
  const obj = value as { toJSON?: () => unknown };
  if (typeof obj.toJSON === 'function') return write(obj.toJSON(), seen);
  if (seen.has(obj)) throw new TypeError('canonicalJson: cyclic structure');
  seen.add(obj);
  let out: string;
  if (Array.isArray(value)) {
    out = '[' + value.map((v) => write(v, seen) ?? 'null').join(',') + ']';
  } else {
    const rec = value as Record<string, unknown>;
    const parts: string[] = [];
    for (const key of Object.keys(rec).sort()) {
      const v = write(rec[key], seen);
      if (v !== undefined) parts.push(JSON.stringify(key) + ':' + v);
    }
    out = '{' + parts.join(',') + '}';
  }
  seen.delete(obj);
  return out;
}
