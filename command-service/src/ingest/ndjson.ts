/**
 * Splits a byte stream into NDJSON lines as it arrives, without holding more than one line
 * (plus one chunk) in memory. Lines are cut on the byte 0x0A, which never occurs inside a
 * multi-byte UTF-8 sequence, and decoded whole, so characters split across chunks survive.
 * Blank lines (and a trailing \r) are ignored.
 */
export type NdjsonItem = { kind: 'line'; text: string } | { kind: 'tooLong'; bytes: number };

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`the body exceeds ${limit} bytes`);
  }
}

export interface SplitOptions {
  /** A longer line is skipped and reported as `tooLong`. */
  maxLineBytes: number;
  /** Reading past this many bytes throws BodyTooLargeError. */
  maxBytes: number;
}

export async function* ndjsonLines(source: AsyncIterable<Buffer | string>, options: SplitOptions): AsyncGenerator<NdjsonItem> {
  let parts: Buffer[] = [];
  let partBytes = 0;
  let skipping = false; // inside an over-long line: drop bytes until its newline
  let skippedBytes = 0;
  let total = 0;

  const emit = (buf: Buffer): NdjsonItem | undefined => {
    let end = buf.length;
    if (end > 0 && buf[end - 1] === 0x0d) end--;
    const text = buf.toString('utf8', 0, end);
    return text.trim() === '' ? undefined : { kind: 'line', text };
  };

  for await (const raw of source) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
    total += chunk.length;
    if (total > options.maxBytes) throw new BodyTooLargeError(options.maxBytes);
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (skipping) {
        skippedBytes += piece.length;
      } else if (partBytes + piece.length > options.maxLineBytes) {
        skipping = true;
        skippedBytes = partBytes + piece.length;
        parts = [];
        partBytes = 0;
      } else if (piece.length) {
        parts.push(piece);
        partBytes += piece.length;
      }
      if (nl < 0) break;
      if (skipping) {
        yield { kind: 'tooLong', bytes: skippedBytes };
        skipping = false;
        skippedBytes = 0;
      } else {
        const item = emit(parts.length === 1 ? parts[0]! : Buffer.concat(parts, partBytes));
        if (item) yield item;
      }
      parts = [];
      partBytes = 0;
      start = nl + 1;
    }
    // Keep partial lines independent of the chunk buffer the stream may reuse.
    if (parts.length) parts = [Buffer.concat(parts, partBytes)];
  }
  if (skipping) yield { kind: 'tooLong', bytes: skippedBytes };
  else if (partBytes) {
    const item = emit(Buffer.concat(parts, partBytes));
    if (item) yield item;
  }
}
