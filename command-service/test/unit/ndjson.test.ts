import { describe, expect, it } from 'vitest';
import { BodyTooLargeError, ndjsonLines, type NdjsonItem } from '../../src/ingest/ndjson.ts';

async function collect(chunks: (string | Buffer)[], maxLineBytes = 1000, maxBytes = 1_000_000): Promise<NdjsonItem[]> {
  const out: NdjsonItem[] = [];
  async function* src() {
    for (const c of chunks) yield typeof c === 'string' ? Buffer.from(c) : c;
  }
  for await (const item of ndjsonLines(src(), { maxLineBytes, maxBytes })) out.push(item);
  return out;
}

describe('NDJSON splitting', () => {
  it('splits across chunk boundaries, skips blank lines, strips \\r, keeps a last line without newline', async () => {
    const items = await collect(['{"a":1}\n{"b"', ':2}\r\n\n   \n{"c":', '3}']);
    expect(items).toEqual([
      { kind: 'line', text: '{"a":1}' },
      { kind: 'line', text: '{"b":2}' },
      { kind: 'line', text: '{"c":3}' },
    ]);
  });

  it('keeps multi-byte characters split between chunks intact', async () => {
    const bytes = Buffer.from('{"name":"Zoë 🚀"}\n');
    const cut = bytes.indexOf(0xf0) + 2; // in the middle of the rocket
    const items = await collect([bytes.subarray(0, cut), bytes.subarray(cut)]);
    expect(items).toEqual([{ kind: 'line', text: '{"name":"Zoë 🚀"}' }]);
  });

  it('reports an over-long line and carries on with the next', async () => {
    const items = await collect(['{"a":1}\n', 'x'.repeat(30), 'y'.repeat(30), '\n{"b":2}\n'], 50);
    expect(items).toEqual([{ kind: 'line', text: '{"a":1}' }, { kind: 'tooLong', bytes: 60 }, { kind: 'line', text: '{"b":2}' }]);
  });

  it('stops at the body limit', async () => {
    await expect(collect(['{"a":1}\n'.repeat(10)], 100, 50)).rejects.toBeInstanceOf(BodyTooLargeError);
  });

  it('does not hold on to a reused chunk buffer', async () => {
    const shared = Buffer.from('{"a":');
    async function* src() {
      yield shared;
      shared.write('XXXXX'); // the producer reuses its buffer
      yield Buffer.from('1}\n');
    }
    const out: NdjsonItem[] = [];
    for await (const item of ndjsonLines(src(), { maxLineBytes: 100, maxBytes: 1000 })) out.push(item);
    expect(out).toEqual([{ kind: 'line', text: '{"a":1}' }]);
  });
});
