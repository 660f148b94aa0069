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
export const PG_EPOCH_MS = 946_684_800_000;

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

/** Buffer's internal UTF-8 writer: no argument checks, which cost more than the copy of a short string. */
type Utf8Writer = Buffer & { utf8Write(s: string, offset: number, length: number): number };

/**
 * text[]; `undefined`/`null` elements become SQL NULL. One pass into room for the worst case (3
 * bytes per UTF-16 unit), so the buffer never grows: see TextArrayBuilder.
 */
export function textArray(values: readonly (string | undefined | null)[]): Buffer {
  let room = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    room += v === undefined || v === null ? 4 : 4 + 3 * v.length;
  }
  const b = new TextArrayBuilder(room);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === undefined || v === null) b.addNull();
    else b.add(v);
  }
  return b.toBuffer();
}

/**
 * A text[] built one element at a time, each string encoded the moment it is added: written where
 * it goes (into room for its worst case) and its length put in front afterwards, instead of
 * measuring every string first and writing it second. The append path puts every event's JSON
 * here right after JSON.stringify: the string is then garbage at once, instead of living (1 KB
 * per event) until the call's arrays are built, which made the young-generation GC copy and
 * promote megabytes per batch.
 */
export class TextArrayBuilder {
  private buf: Buffer;
  private end = 20; // room for the header of a non-empty array
  private count = 0;
  private hasNulls = false;

  /** `expectedBytes`: a guess at the encoded total; the buffer doubles when it is short. */
  constructor(expectedBytes = 1024) {
    this.buf = Buffer.allocUnsafe(20 + Math.max(64, Math.ceil(expectedBytes)));
  }

  /** Appends `s` and returns where its element starts (the key for `subset`). */
  add(s: string): number {
    const at = this.end;
    const worst = 4 + 3 * s.length;
    if (this.buf.length - at < worst) this.grow(at + worst);
    const n = s.length === 0 ? 0 : (this.buf as Utf8Writer).utf8Write(s, at + 4, this.buf.length - at - 4);
    this.buf.writeInt32BE(n, at);
    this.end = at + 4 + n;
    this.count++;
    return at;
  }

  /** Appends SQL NULL and returns where its element starts. */
  addNull(): number {
    const at = this.end;
    if (this.buf.length - at < 4) this.grow(at + 4);
    this.buf.writeInt32BE(-1, at);
    this.end = at + 4;
    this.count++;
    this.hasNulls = true;
    return at;
  }

  get length(): number {
    return this.count;
  }

  /** Encoded bytes so far (elements only). */
  get bytes(): number {
    return this.end - 20;
  }

  /** The array of every element added; a view that stays valid while nothing more is added. */
  toBuffer(): Buffer {
    return this.buf.subarray(0, header(this.buf, OID.text, this.count, this.hasNulls) === 12 ? 12 : this.end);
  }

  /** A new array of the elements that start at `starts` (as `add` returned them), in that order. */
  subset(starts: readonly number[]): Buffer {
    const size = (at: number) => 4 + Math.max(0, this.buf.readInt32BE(at)); // NULL: its -1 alone
    let total = headerSize(starts.length);
    let nulls = false;
    for (const at of starts) {
      total += size(at);
      nulls ||= this.buf.readInt32BE(at) < 0;
    }
    const out = Buffer.allocUnsafe(total);
    let o = header(out, OID.text, starts.length, nulls);
    for (const at of starts) o += this.buf.copy(out, o, at, at + size(at));
    return out;
  }

  private grow(need: number): void {
    const next = Buffer.allocUnsafe(Math.max(need, 2 * this.buf.length));
    this.buf.copy(next, 0, 0, this.end);
    this.buf = next;
  }
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

/**
 * A safe integer as big-endian 64-bit two's complement at `o`, without a BigInt per value (the
 * binary wire form of int8 and timestamptz); returns the offset after it.
 */
export function writeInt64BE(buf: Buffer, v: number, o: number): number {
  const hi = Math.floor(v / 4294967296);
  buf.writeInt32BE(hi, o);
  return buf.writeUInt32BE(v - hi * 4294967296, o + 4);
}

export function int8Array(values: readonly number[]): Buffer {
  const { buf, at } = fixedArray(OID.int8, 8, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 12) {
    buf.writeInt32BE(8, o);
    writeInt64BE(buf, values[i]!, o + 4);
  }
  return buf;
}

/** Hex digit values by character code (0-9, a-f, A-F). */
const HEX_VALUE = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
for (let i = 0; i < 6; i++) HEX_VALUE[97 + i] = HEX_VALUE[65 + i] = 10 + i;
/** Where each of a canonical UUID's 16 bytes starts in its text (8-4-4-4-12, dashes skipped). */
const UUID_BYTE_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/** uuid[] from canonical (dashed, any case) UUID strings; callers validate them first. */
export function uuidArray(values: readonly string[]): Buffer {
  const { buf, at } = fixedArray(OID.uuid, 16, values.length);
  for (let i = 0, o = at; i < values.length; i++, o += 20) {
    const u = values[i]!;
    buf.writeInt32BE(16, o);
    for (let b = 0; b < 16; b++) {
      const c = UUID_BYTE_AT[b]!;
      buf[o + 4 + b] = (HEX_VALUE[u.charCodeAt(c)]! << 4) | HEX_VALUE[u.charCodeAt(c + 1)]!;
    }
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
    writeInt64BE(buf, (ms - PG_EPOCH_MS) * 1000, o + 4);
  }
  return buf;
}
