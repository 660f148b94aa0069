import { describe, expect, it } from 'vitest';
import { toCsvLine, toNdjsonLine, type AuditRow } from '../src/audit/row.ts';

const row = (over: Partial<AuditRow>): AuditRow => ({
  tenantId: 't1',
  globalPosition: 7,
  streamId: 'record-t1-order-o-1',
  streamPosition: 0,
  eventId: '0190a0b0-0000-7000-8000-000000000001',
  type: 'RecordIngested',
  schemaVersion: 2,
  actorKind: 'user',
  actorId: 'u1',
  subject: 'record:order/o-1',
  occurredAt: new Date('2026-01-02T03:04:05.000Z'),
  recordedAt: new Date('2026-01-02T03:04:05.000Z'),
  correlationId: null,
  causationId: null,
  payload: '{"n":1}',
  chainSeq: 1,
  hash: Buffer.alloc(32, 1),
  ...over,
});

describe('CSV export cells (formula injection)', () => {
  it('guards cells a spreadsheet would run as a formula, and only those', () => {
    const line = toCsvLine(row({ correlationId: '=HYPERLINK("http://x","y")', actorId: '+1', causationId: '-2' }));
    const cells = line.trimEnd();
    expect(cells).toContain(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(cells).toContain(",'+1,");
    expect(cells).toContain(",'-2,");
    for (const lead of ['@x', '\tx', '\rx']) expect(toCsvLine(row({ correlationId: lead }))).toContain(`'${lead.slice(0, 1)}`);
    // ordinary cells unchanged; NDJSON verbatim
    expect(toCsvLine(row({ correlationId: 'corr-1' }))).toContain(',corr-1,');
    expect(toNdjsonLine(row({ correlationId: '=1+1' }))).toContain('"correlationId":"=1+1"');
  });
});
