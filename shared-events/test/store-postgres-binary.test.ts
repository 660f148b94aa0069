import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { int4Array, int8Array, textArray, TextArrayBuilder, timestamptzArray, uuidArray } from '../src/store/postgres/binary.ts';
import { freshDatabase } from '../../test/support.ts';

/**
 * The binary array parameters of the PostgreSQL store's appends, checked against a real server:
 * what the server decodes must be exactly what we meant (encodings, NULLs, empty arrays, edges).
 */
describe('PostgreSQL binary array parameters', () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: await freshDatabase('bin') });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
  });

  it('text[]: unicode, quotes, backslashes, empty strings and NULLs arrive unchanged', async () => {
    const values = ['plain', '', 'quote " and \\ backslash', 'naïve café', '🚀 emoji 𝄞', '{"json": [1, "x"]}', null, 'tab\there\nnewline', undefined];
    const r = await client.query<{ a: (string | null)[]; n: number }>('select $1::text[] as a, cardinality($1::text[]) as n', [textArray(values)]);
    expect(r.rows[0]!.a).toEqual(values.map((v) => v ?? null));
    expect(r.rows[0]!.n).toBe(values.length);
  });

  it('text[]: long and multi-byte strings next to short ones (the one-pass writer sizes for the worst case)', async () => {
    const values = ['€'.repeat(5000), 'a', '', '😀'.repeat(3000) + 'x', null, 'ü'.repeat(70_000)];
    const r = await client.query<{ a: (string | null)[] }>('select $1::text[] as a', [textArray(values)]);
    expect(r.rows[0]!.a).toEqual(values);
  });

  it('text[] built element by element: grows from a tiny buffer, and a subset keeps the order asked', async () => {
    const values = ['{"a":1}', '', 'naïve café', '€'.repeat(3000), '🚀 emoji 𝄞', 'x'.repeat(20_000), '{"q":"\\""}'];
    const b = new TextArrayBuilder(1); // far too small: every large element grows it
    const starts = values.map((v) => b.add(v));
    expect(b.length).toBe(values.length);
    expect(b.bytes).toBe(values.reduce((n, v) => n + 4 + Buffer.byteLength(v), 0));
    const pick = [5, 0, 3, 6];
    const r = await client.query<{ all: string[]; some: string[]; none: string[] }>('select $1::text[] as all, $2::text[] as some, $3::text[] as none', [
      b.toBuffer(),
      b.subset(pick.map((i) => starts[i]!)),
      b.subset([]),
    ]);
    expect(r.rows[0]!.all).toEqual(values);
    expect(r.rows[0]!.some).toEqual(pick.map((i) => values[i]));
    expect(r.rows[0]!.none).toEqual([]);
    const empty = await client.query<{ n: number }>('select cardinality($1::text[]) as n', [new TextArrayBuilder(0).toBuffer()]);
    expect(empty.rows[0]!.n).toBe(0);
  });

  it('empty arrays of every kind', async () => {
    const r = await client.query<{ t: number; i: number; b: number; u: number; d: number }>(
      `select cardinality($1::text[]) as t, cardinality($2::int4[]) as i, cardinality($3::int8[]) as b,
              cardinality($4::uuid[]) as u, cardinality($5::timestamptz[]) as d`,
      [textArray([]), int4Array([]), int8Array([]), uuidArray([]), timestamptzArray([])],
    );
    expect(r.rows[0]).toEqual({ t: 0, i: 0, b: 0, u: 0, d: 0 });
  });

  it('int4[], int8[] (negative and beyond 2^32), uuid[] and timestamptz[] (before and after 2000)', async () => {
    const ints = [0, 1, -1, 2147483647, -2147483648];
    const bigs = [0, -3, 4294967296, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    const uuids = ['0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 'FFFFFFFF-0000-4000-8000-00000000000A'];
    const dates = [new Date('1999-12-31T23:59:59.999Z'), new Date('2000-01-01T00:00:00.000Z'), new Date('2024-02-29T12:34:56.789Z')];
    const r = await client.query<{ i: number[]; b: string[]; u: string[]; d: string[] }>(
      `select $1::int4[] as i, $2::int8[]::text[] as b, $3::uuid[]::text[] as u,
              array(select to_char(x at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') from unnest($4::timestamptz[]) x) as d`,
      [int4Array(ints), int8Array(bigs), uuidArray(uuids), timestamptzArray(dates)],
    );
    expect(r.rows[0]!.i).toEqual(ints);
    expect(r.rows[0]!.b.map(Number)).toEqual(bigs);
    expect(r.rows[0]!.u).toEqual(uuids.map((u) => u.toLowerCase()));
    expect(r.rows[0]!.d).toEqual(dates.map((d) => d.toISOString()));
  });
});
