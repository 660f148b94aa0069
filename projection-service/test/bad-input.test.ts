import { describe, expect, it } from 'vitest';
import { ValidationError, keelEventTypes } from '@keel/shared-events';
import { AUDIT_PAGE_MAX, parseAuditExport, parseAuditPage, nextAuditCursor } from '../src/audit/filters.ts';
import { parseDeliveriesQuery, parseFlowRunsQuery, parseIngestRatesQuery, PAGE_MAX } from '../src/dashboard/query.ts';
import { decodeCursor, encodeCursor, filterFingerprint } from '../src/read/cursor.ts';

const tenantId = '0195a0a0-0000-7000-8000-000000000001';
const ctx = { tenantId, isKnownType: (t: string) => (keelEventTypes as readonly string[]).includes(t) };
const stream = `record-${tenantId}-customer-42`;

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof ValidationError) return e.field ?? 'no field';
    throw e;
  }
  return undefined;
}

describe('audit query parameters', () => {
  it('parses every filter', () => {
    const q = parseAuditPage(
      {
        from: '2025-01-01',
        to: '2025-01-02T00:00:00+02:00',
        actor: 'apiKey:k_1',
        type: 'RoleGranted,ApiKeyIssued',
        streamId: stream,
        correlationId: 'c-1',
        limit: '10',
        minPosition: '42',
      },
      ctx,
    );
    expect(q.filters).toEqual({
      from: new Date('2025-01-01T00:00:00Z'),
      to: new Date('2025-01-01T22:00:00Z'),
      actor: { kind: 'apiKey', id: 'k_1' },
      types: ['ApiKeyIssued', 'RoleGranted'],
      streamId: stream,
      correlationId: 'c-1',
    });
    expect(q.limit).toBe(10);
    expect(q.minPosition).toBe(42);
    expect(parseAuditPage({ actor: 'someone@example.com' }, ctx).filters.actor).toEqual({ id: 'someone@example.com' });
  });

  it('caps huge limits instead of refusing them', () => {
    expect(parseAuditPage({ limit: '100000000000' }, ctx).limit).toBe(AUDIT_PAGE_MAX);
    expect(parseFlowRunsQuery({ limit: '99999' }).limit).toBe(PAGE_MAX);
  });

  const injection = [
    "' OR 1=1 --",
    "x'; drop table audit_events; --",
    '$1) or (1=1',
    '<script>alert(1)</script>',
    'a\u0000b',
    '../../etc/passwd ',
  ];
  const table: [string, Record<string, unknown>, string][] = [
    ['unknown filter', { tenant: 'other' }, 'tenant'],
    ['unknown filter (typo)', { stream_id: stream }, 'stream_id'],
    ['inverted time range', { from: '2025-02-01', to: '2025-01-01' }, 'from'],
    ['not a date', { from: 'yesterday' }, 'from'],
    ['date-time without zone', { from: '2025-01-01T10:00:00' }, 'from'],
    ['impossible date', { to: '2025-13-45' }, 'to'],
    ['negative limit', { limit: '-1' }, 'limit'],
    ['zero limit', { limit: '0' }, 'limit'],
    ['fractional limit', { limit: '2.5' }, 'limit'],
    ['limit as text', { limit: 'ten' }, 'limit'],
    ['repeated parameter', { type: ['RoleGranted', 'RoleRevoked'] }, 'type'],
    ['unknown event type', { type: 'NoSuchEvent' }, 'type'],
    ['stream of another tenant', { streamId: 'record-0195a0a0-0000-7000-8000-000000000002-customer-42' }, 'streamId'],
    ['not a stream id', { streamId: 'nonsense' }, 'streamId'],
    ['bad minPosition', { minPosition: '-5' }, 'minPosition'],
    ['malformed cursor: not base64url', { cursor: '!!!' }, 'cursor'],
    ['malformed cursor: not JSON', { cursor: Buffer.from('hello').toString('base64url') }, 'cursor'],
    ['malformed cursor: wrong shape', { cursor: Buffer.from('{"k":["x"],"f":"y"}').toString('base64url') }, 'cursor'],
    ['malformed cursor: huge', { cursor: 'A'.repeat(5000) }, 'cursor'],
    [
      'cursor of other filters',
      { cursor: nextAuditCursor({ position: 10 }, filterFingerprint('audit', { types: ['X'] })) },
      'cursor',
    ],
    ...injection.flatMap((text): [string, Record<string, unknown>, string][] => [
      [`injection in actor: ${text}`, { actor: text }, 'actor'],
      [`injection in type: ${text}`, { type: text }, 'type'],
      [`injection in streamId: ${text}`, { streamId: text }, 'streamId'],
      [`injection in streamId suffix: ${text}`, { streamId: `record-${tenantId}-${text}` }, 'streamId'],
      [`injection in correlationId: ${text}`, { correlationId: text }, 'correlationId'],
      [`injection in from: ${text}`, { from: text }, 'from'],
      [`injection in limit: ${text}`, { limit: text }, 'limit'],
      [`injection in cursor: ${text}`, { cursor: text }, 'cursor'],
    ]),
  ];
  it.each(table)('%s → ValidationError naming the parameter', (_name, query, field) => {
    expect(fieldOf(() => parseAuditPage(query, ctx))).toBe(field);
  });

  it('keeps a cursor working with the same filters (stable across pages)', () => {
    const first = parseAuditPage({ type: 'RoleGranted', actor: 'u1' }, ctx);
    const cursor = nextAuditCursor({ position: 1234 }, first.fingerprint);
    // Same filters in another order of parameters and types: same fingerprint.
    const second = parseAuditPage({ actor: 'u1', type: 'RoleGranted', cursor }, ctx);
    expect(second.before).toEqual({ position: 1234 });
    // With a time window the order (and the cursor) is (recordedAt, position).
    const windowed = parseAuditPage({ from: '2025-01-01' }, ctx);
    const c2 = nextAuditCursor({ recordedAt: 1735700000000, position: 77 }, windowed.fingerprint);
    expect(parseAuditPage({ from: '2025-01-01', cursor: c2 }, ctx).before).toEqual({
      recordedAt: 1735700000000,
      position: 77,
    });
    expect(
      fieldOf(() =>
        parseAuditPage({ from: '2025-01-01', cursor: nextAuditCursor({ position: 77 }, windowed.fingerprint) }, ctx),
      ),
    ).toBe('cursor');
  });

  it('export takes a format and the same filters, but no paging', () => {
    expect(parseAuditExport({ format: 'csv', type: 'RoleGranted' }, ctx).format).toBe('csv');
    expect(parseAuditExport({}, ctx).format).toBe('ndjson');
    expect(fieldOf(() => parseAuditExport({ format: 'xml' }, ctx))).toBe('format');
    expect(fieldOf(() => parseAuditExport({ cursor: 'x' }, ctx))).toBe('cursor');
  });
});

describe('dashboard query parameters', () => {
  it('refuse junk with the parameter named', () => {
    expect(fieldOf(() => parseFlowRunsQuery({ status: 'exploded' }))).toBe('status');
    expect(fieldOf(() => parseFlowRunsQuery({ flowId: "x' or 1=1" }))).toBe('flowId');
    expect(fieldOf(() => parseFlowRunsQuery({ order: 'asc' }))).toBe('order');
    expect(
      fieldOf(() => parseDeliveriesQuery({ cursor: encodeCursor([1], filterFingerprint('deliveries', {})) })),
    ).toBe('cursor');
    expect(fieldOf(() => parseIngestRatesQuery({ from: '2025-02-01', to: '2025-01-01' }, ctx.isKnownType))).toBe(
      'from',
    );
    expect(fieldOf(() => parseIngestRatesQuery({ from: '2020-01-01', to: '2025-01-01' }, ctx.isKnownType))).toBe(
      'from',
    );
    expect(fieldOf(() => parseIngestRatesQuery({ type: 'Nope' }, ctx.isKnownType))).toBe('type');
  });

  it('round-trip their cursors', () => {
    const q = parseDeliveriesQuery({ status: 'failed' });
    const again = parseDeliveriesQuery({ status: 'failed', cursor: encodeCursor([77, 'wh-1'], q.fingerprint) });
    expect(again.before).toEqual([77, 'wh-1']);
    expect(decodeCursor(encodeCursor([5], 'f'), 'f', ['int'])).toEqual([5]);
  });
});
