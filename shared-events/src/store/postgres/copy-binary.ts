import { HEX_VALUE, PG_EPOCH_MS, UUID_BYTE_AT, writeInt64BE } from './binary.ts';

/**
 * Rows in COPY's binary format (PostgreSQL docs, COPY, "Binary Format"): the server parses no
 * text for integers, timestamps or uuids, and nothing is escaped. Large appends (append.ts,
 * copyAppend) and the audit projection's rebuilds write through it. Pure: bytes in a growing
 * buffer.
 */
/** Texts up to this length are tried as ASCII first (see CopyBinaryWriter#ascii). */
const SHORT = 64;

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

export class CopyBinaryWriter {
  private buf: Buffer;
  private at = 0;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, 1024));
    this.buf.set(SIGNATURE, 0);
    this.buf.writeInt32BE(0, 11); // flags
    this.at = this.buf.writeInt32BE(0, 15); // header extension length
  }

  /** Starts a row of `fields` fields. */
  tuple(fields: number): void {
    this.room(2);
    this.at = this.buf.writeInt16BE(fields, this.at);
  }

  text(s: string | null): void {
    if (s === null) return this.nul();
    // UTF-8 takes at most 3 bytes per UTF-16 code unit; the length is known once written.
    this.room(4 + 3 * s.length);
    const start = this.at + 4;
    let n = s.length <= SHORT ? this.ascii(s, start) : -1;
    if (n < 0) n = this.buf.write(s, start, 'utf8');
    this.buf.writeInt32BE(n, this.at);
    this.at = start + n;
  }

  int4(v: number): void {
    this.room(8);
    this.buf.writeInt32BE(4, this.at);
    this.at = this.buf.writeInt32BE(v, this.at + 4);
  }

  int8(v: number): void {
    this.room(12);
    this.buf.writeInt32BE(8, this.at);
    this.int64(v);
  }

  /** timestamptz: microseconds since 2000-01-01 UTC. */
  timestamp(d: Date | number): void {
    const ms = typeof d === 'number' ? d : d.getTime();
    if (Number.isNaN(ms)) throw new RangeError('invalid date in a COPY row');
    this.room(12);
    this.buf.writeInt32BE(8, this.at);
    const us = (ms - PG_EPOCH_MS) * 1000;
    if (Number.isSafeInteger(us)) this.int64(us);
    else this.at = this.buf.writeBigInt64BE(BigInt(ms - PG_EPOCH_MS) * 1000n, this.at + 4);
  }

  /** uuid from its canonical text (dashed, any case; validated by the caller). */
  uuid(s: string): void {
    this.room(20);
    this.buf.writeInt32BE(16, this.at);
    this.at += 4;
    const buf = this.buf;
    for (let b = 0; b < 16; b++) {
      const c = UUID_BYTE_AT[b]!;
      buf[this.at + b] = (HEX_VALUE[s.charCodeAt(c)]! << 4) | HEX_VALUE[s.charCodeAt(c + 1)]!;
    }
    this.at += 16;
  }

  /** A field already encoded: its 4-byte length and its bytes, as `source[start..]` holds them. */
  encoded(source: Buffer, start: number): void {
    const n = source.readInt32BE(start);
    const size = n < 0 ? 4 : 4 + n;
    this.room(size);
    source.copy(this.buf, this.at, start, start + size);
    this.at += size;
  }

  bytes(b: Buffer): void {
    this.room(4 + b.length);
    this.buf.writeInt32BE(b.length, this.at);
    this.buf.set(b, this.at + 4);
    this.at += 4 + b.length;
  }

  /** The whole COPY data, trailer included; the writer is done. */
  finish(): Buffer {
    this.room(2);
    this.at = this.buf.writeInt16BE(-1, this.at);
    return this.buf.subarray(0, this.at);
  }

  private nul(): void {
    this.room(4);
    this.at = this.buf.writeInt32BE(-1, this.at);
  }

  /**
   * Copies an ASCII string byte by byte (its UTF-8 is itself) and answers its length, or -1 at
   * the first other character. Ids, types and names are short and ASCII: the loop takes ~40 ns
   * a field where Buffer#write's call into native code takes ~70.
   */
  private ascii(s: string, start: number): number {
    const buf = this.buf;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return -1;
      buf[start + i] = c;
    }
    return s.length;
  }

  /** A safe integer as a big-endian two's-complement int64, after its 4-byte length. */
  private int64(v: number): void {
    this.at = writeInt64BE(this.buf, v, this.at + 4);
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.at + n, 2 * this.buf.length));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }
}
