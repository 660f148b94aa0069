import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyBinaryWriter, writeAuditRecord } from '../src/audit/copy.ts';
import { appendToChain, emptyHead } from '../src/audit/chain.ts';
import type { ChainHead } from '../src/audit/chain.ts';
import { mapAuditRow } from '../src/audit/query.ts';
import { toAuditEntry } from '../src/audit/row.ts';
import type { AuditRow } from '../src/audit/row.ts';
import { copyAuditRows } from '../src/audit/store.ts';
import { eventFactory } from './fixtures.ts';
import { testEnv } from './support.ts';
import type { TestEnv } from './support.ts';

describe('audit rows through binary COPY', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await testEnv('auditcopy');
  });
  afterAll(async () => {
    await env?.close();
  });

  it('read back exactly as chained: texts, nulls, integers, timestamps either side of 2000 and far out, hashes', async () => {
    const event = eventFactory(new Date('1969-12-31T23:59:50.007Z'));
    const datas: Record<string, unknown>[] = [
      { tabs: 'a\tb\\c\nd\re', unicode: 'é 中文 😀', quote: '"' },
      { big: 'ü'.repeat(5000) }, // bigger than the writer starts with
      {},
    ];
    const extras = [
      { occurredAt: new Date('1999-12-31T23:59:59.999Z'), causationId: 'cause\t1' },
      { occurredAt: new Date('2300-06-30T12:34:56.789Z'), recordedAt: new Date('2000-01-01T00:00:00.001Z') },
      { globalPosition: 2 ** 40 + 3, streamPosition: 2 ** 35, correlationId: undefined, schemaVersion: 7 },
    ];
    const rows: AuditRow[] = [];
    let head: ChainHead = emptyHead('t-ü');
    datas.forEach((data, i) => {
      const e = event('t-ü', 'customer', `c\\${i}`, 'RecordIngested', data, {
        actor: { kind: 'user', id: 'ü\n' },
        ...extras[i],
      });
      const r = appendToChain(head, toAuditEntry(e));
      head = r.head;
      rows.push(r.row!);
    });
    expect(rows.some((r) => r.subject === null) || rows.some((r) => r.correlationId === null)).toBe(true);

    const w = new CopyBinaryWriter(0);
    for (const r of rows) writeAuditRecord(w, r);
    const client = await env.pool.connect();
    try {
      await client.query('create temp table copied (like audit_events)');
      await copyAuditRows(client, 'copied', w.finish());
      const back = await client.query(
        `select tenant_id, global_position, chain_seq, stream_id, stream_position, event_id, type, schema_version, actor_kind,
                actor_id, subject, occurred_at, recorded_at, correlation_id, causation_id, payload::text as payload, hash
           from copied order by global_position`,
      );
      expect(back.rows.map(mapAuditRow)).toEqual(rows);
    } finally {
      client.release();
    }
  });
});
