import avro from 'avsc';

/**
 * avsc logical types used by Keel's schemas. A logical type keeps the wire format standard
 * (a reader without it sees the underlying Avro type) while code sees JSON-friendly values.
 */

type Hook = ((value: unknown, type: avro.Type) => void) | undefined;

/**
 * True when `value` survives JSON text unchanged (undefined object properties aside). Allocation
 * free, since it runs on every payload the codec validates; `firstNonJson` finds the place after.
 */
export function isJsonValue(value: unknown): boolean {
  if (value === null) return true;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      break;
    default:
      return false;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isJsonValue(value[i])) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  const rec = value as Record<string, unknown>;
  for (const k in rec) {
    const v = rec[k];
    if (v !== undefined && !isJsonValue(v)) return false;
  }
  return true;
}

/** Where inside a JSON value the first non-JSON thing sits, or undefined when it is all JSON. */
export function firstNonJson(value: unknown, path: string[] = []): { path: string[]; value: unknown } | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : { path, value };
    case 'object': {
      if (value === null) return undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const p = firstNonJson(value[i], [...path, String(i)]);
          if (p) return p;
        }
        return undefined;
      }
      // Only plain objects: a Date or a Map would not come back as what went in.
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) return { path, value };
      for (const [k, v] of Object.entries(value)) {
        // An undefined property is dropped by JSON, as everywhere else in JS: not an error.
        if (v === undefined) continue;
        const p = firstNonJson(v, [...path, k]);
        if (p) return p;
      }
      return undefined;
    }
    default:
      return { path, value };
  }
}

/**
 * `{"type": "string", "logicalType": "json"}`: any JSON value in memory, its JSON text on the
 * wire. Validation walks the value so the error names the offending inner field.
 */
export class JsonType extends avro.types.LogicalType {
  protected override _fromValue(val: unknown): unknown {
    return JSON.parse(val as string);
  }
  protected override _toValue(val: unknown): unknown {
    return JSON.stringify(val);
  }
  protected override _resolve(type: avro.Type): ((val: unknown) => unknown) | undefined {
    if (avro.Type.isType(type, 'string', 'logical:json')) return (val) => this._fromValue(val);
    return undefined;
  }
  // avsc's declaration omits the internal _check hook; it is what isValid() calls.
  _check(val: unknown, _flags: number, hook: Hook, path: string[] | undefined): boolean {
    if (val === undefined) {
      hook?.(val, this);
      return false;
    }
    if (isJsonValue(val)) return true;
    const bad = firstNonJson(val) ?? { path: [], value: val };
    if (hook && path) {
      const n = path.length;
      path.push(...bad.path);
      hook(bad.value, this);
      path.length = n;
    }
    return false;
  }
}

// Date-time with an explicit zone (Z or ±hh:mm), as toISOString() and RFC 3339 write it.
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** `{"type": "string", "logicalType": "iso-datetime"}`: an ISO-8601 date-time string. */
export class IsoDateTimeType extends avro.types.LogicalType {
  protected override _fromValue(val: unknown): unknown {
    return val;
  }
  protected override _toValue(val: unknown): unknown {
    return typeof val === 'string' && ISO_RE.test(val) && !Number.isNaN(Date.parse(val)) ? val : undefined;
  }
  protected override _resolve(type: avro.Type): ((val: unknown) => unknown) | undefined {
    if (avro.Type.isType(type, 'string', 'logical:iso-datetime')) return (val) => val;
    return undefined;
  }
}

/** `{"type": "long", "logicalType": "timestamp-millis"}` (standard Avro): a Date in memory. */
export class TimestampMillisType extends avro.types.LogicalType {
  protected override _fromValue(val: unknown): unknown {
    return new Date(val as number);
  }
  protected override _toValue(val: unknown): unknown {
    if (val instanceof Date) {
      const ms = val.getTime();
      return Number.isNaN(ms) ? undefined : ms;
    }
    return undefined;
  }
  protected override _resolve(type: avro.Type): ((val: unknown) => unknown) | undefined {
    if (avro.Type.isType(type, 'long', 'int', 'logical:timestamp-millis')) return (val) => this._fromValue(val);
    return undefined;
  }
}

export const logicalTypes = {
  json: JsonType,
  'iso-datetime': IsoDateTimeType,
  'timestamp-millis': TimestampMillisType,
} as const;
