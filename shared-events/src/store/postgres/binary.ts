/**
 * PostgreSQL binary array encoding for query parameters (the `array_send` wire format).
 *
 * Why: appends pass every column as one array parameter. node-pg sends a Buffer parameter in
 * binary format, which the server decodes with a length-prefixed copy per element. The text
 * format (`{"...","..."}`) makes the server unescape every quote of every JSON payload instead,
 * which measured several times slower than the insert itself.
 */

const OID = { int4: 23, int8: 20, text: 25, uuid: 2950, timestamptz: 1184 } as const;
/** 2000-01-01T00:00:00Z, the PostgreSQL timestamp epoch, in unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

function header(buf: Buffer, oid: number, count: number, hasNulls: boolean): number {
  if (count === 0) {
    buf.writeInt32BE(0, 0); // zero dimensions: the empty array
    buf.writeInt32BE(0, 4);
    buf.writeUInt32BE(oid, 8);
    return 12;
  }
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(hasNulls ? 1 : 0, 4);
  buf.writeUInt32BE(oid, 8);
  buf.writeInt32BE(count, 12);
  buf.writeInt32BE(1, 16); // lower bound
  return 20;
}

const headerSize = (count: number): number => (count === 0 ? 12 : 20);

/** text[]; `undefined`/`null` elements become SQL NULL. */
export function textArray(values: readonly (string | undefined | null)[]): Buffer {
  let size = headerSize(values.length);
  let hasNulls = false;
  const lengths = new Array<number>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === undefined || v === null) {
      hasNulls = true;
      lengths[i] = -1;
      size += 4;
    } else {
      const n = Buffer.byteLength(v, 'utf8');
      lengths[i] = n;
      size += 4 + n;
    }
  }
  const buf = Buffer.allocUnsafe(size);
  let o = header(buf, OID.text, values.length, hasNulls);
  for (let i = 0; i < values.length; i++) {
    const n = lengths[i]!;
    buf.writeInt32BE(n, o);
    o += 4;
    if (n > 0) o += buf.write(values[i]!, o, n, 'utf8');
  }
  return buf;
}

function fixedArray(oid: number, width: number, count: number): { buf: Buffer; at: number } {
  const buf = Buffer.allocUnsafe(headerSize(count) + count * (4 + width));
  return { buf, at: header(buf, oid, count, false) };
}

export function int4Array(values: readonly number[]): Buffer {
  const { buf, at } = fixedArray(OID.int4, 4, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 8) {
    buf.writeInt32BE(4, o);
    buf.writeInt32BE(values[i]!, o + 4);
  }
  return buf;
}

export function int8Array(values: readonly number[]): Buffer {
  const { buf, at } = fixedArray(OID.int8, 8, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 12) {
    buf.writeInt32BE(8, o);
    buf.writeBigInt64BE(BigInt(values[i]!), o + 4);
  }
  return buf;
}

/** uuid[] from canonical (dashed, any case) UUID strings; callers validate them first. */
export function uuidArray(values: readonly string[]): Buffer {
  const { buf, at } = fixedArray(OID.uuid, 16, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 20) {
    const u = values[i]!;
    buf.writeInt32BE(16, o);
    // 8-4-4-4-12 hex digits between the dashes
    buf.write(u.slice(0, 8), o + 4, 4, 'hex');
    buf.write(u.slice(9, 13), o + 8, 2, 'hex');
    buf.write(u.slice(14, 18), o + 10, 2, 'hex');
    buf.write(u.slice(19, 23), o + 12, 2, 'hex');
    buf.write(u.slice(24, 36), o + 14, 6, 'hex');
  }
  return buf;
}

/** timestamptz[] from Dates or unix milliseconds (integer microseconds since 2000-01-01 on the wire). */
export function timestamptzArray(values: readonly (Date | number)[]): Buffer {
  const { buf, at } = fixedArray(OID.timestamptz, 8, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 12) {
    const v = values[i]!;
    const ms = typeof v === 'number' ? v : v.getTime();
    buf.writeInt32BE(8, o);
    // exact in a double: |µs| stays far below 2^53 for any date we store
    buf.writeBigInt64BE(BigInt((ms - PG_EPOCH_MS) * 1000), o + 4);
  }
  return buf;
}
