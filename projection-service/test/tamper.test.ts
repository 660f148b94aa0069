import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createPostgresBus } from '@keel/shared-events';
import type { EventBus } from '@keel/shared-events';
import { appendToChain, emptyHead } from '../src/audit/chain.ts';
import { AUDIT_COLUMNS, mapAuditRow } from '../src/audit/query.ts';
import { auditVerifyCommand, startProjectors, verifyAuditChain } from '../src/index.ts';
import type { ProjectorsHandle } from '../src/index.ts';
import { auth, createTenant, ingest, testApp, testEnv, testLogger, waitForProjection } from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

/**
 * Tamper evidence end to end: someone with write access to the database changes the audit table;
 * `verify` must notice and say where. Each test restores the table from a snapshot afterwards.
 */
describe('audit tamper evidence', () => {
  let env: TestEnv;
  let bus: EventBus;
  let projectors: ProjectorsHandle;
  let app: FastifyInstance;
  let t: TestTenant;
  let other: TestTenant;

  beforeAll(async () => {
    env = await testEnv('tamper');
    t = await createTenant(env, 'T');
    other = await createTenant(env, 'O');
    await ingest(env, t.tenantId, 40);
    await ingest(env, other.tenantId, 10);
    bus = createPostgresBus({ store: env.store, pool: env.pool, logger: testLogger, pollIntervalMs: 10 });
    projectors = await startProjectors(env.runtime, bus, { config: env.config });
    await waitForProjection(env, 'audit');
    // Freeze the projector so the tests own the table; keep a pristine copy to restore from.
    await projectors.stop();
    await env.pool.query('create table audit_pristine as select * from audit_events');
    app = await testApp(env);
  });
  beforeEach(async () => {
    await env.pool.query('truncate audit_events; insert into audit_events select * from audit_pristine');
  });
  afterAll(async () => {
    await app?.close();
    await bus?.close();
    await env?.close();
  });

  const nth = async (n: number) =>
    (
      await env.pool.query(
        `select global_position::int as p, chain_seq::int as s from audit_events where tenant_id = $1 and chain_seq = $2`,
        [t.tenantId, n],
      )
    ).rows[0] as {
      p: number;
      s: number;
    };

  it('an untouched chain verifies, through the API too', async () => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${t.tenantId}/audit/verify`,
      headers: auth(t.keys.auditor),
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ ok: true, checked: 46, checkpoints: { checked: 9, total: 9 } });
  });

  it('UPDATE of one row (its payload) is detected and located', async () => {
    const target = await nth(17);
    await env.pool.query(
      `update audit_events set payload = '{"name":"someone else"}' where tenant_id = $1 and global_position = $2`,
      [t.tenantId, target.p],
    );
    const res = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${t.tenantId}/audit/verify`,
      headers: auth(t.keys.auditor),
    });
    expect(res.json()).toMatchObject({
      ok: false,
      firstBrokenAt: target.p,
      firstBrokenSeq: 17,
      reason: 'hash_mismatch',
      checked: 17,
    });
    // The other tenant's chain is untouched and still verifies.
    expect((await verifyAuditChain(env.runtime, other.tenantId, { config: env.config })).ok).toBe(true);
  });

  it('UPDATE of who did it (actor) is detected', async () => {
    const target = await nth(3);
    await env.pool.query(
      `update audit_events set actor_id = 'innocent' where tenant_id = $1 and global_position = $2`,
      [t.tenantId, target.p],
    );
    expect(await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).toMatchObject({
      ok: false,
      firstBrokenAt: target.p,
    });
  });

  it('DELETE of one row is detected where the chain skips', async () => {
    const target = await nth(22);
    await env.pool.query(`delete from audit_events where tenant_id = $1 and global_position = $2`, [
      t.tenantId,
      target.p,
    ]);
    const next = await nth(23);
    expect(await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).toMatchObject({
      ok: false,
      firstBrokenAt: next.p,
      firstBrokenSeq: 22,
      reason: 'sequence_gap',
    });
  });

  it('reordering two rows is detected', async () => {
    const a = await nth(10);
    const b = await nth(11);
    // Swap the two rows' places (position and seq), through a free position: the key is not deferrable.
    const move = (from: number, to: number, seq: number) =>
      env.pool.query(
        `update audit_events set global_position = $3, chain_seq = $4 where tenant_id = $1 and global_position = $2`,
        [t.tenantId, from, to, seq],
      );
    await move(a.p, -1, 11);
    await move(b.p, a.p, 10);
    await move(-1, b.p, 11);
    expect(await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).toMatchObject({
      ok: false,
      firstBrokenAt: a.p,
      reason: 'hash_mismatch',
    });
  });

  it('deleting the newest rows is detected (the head and the checkpoints still name them)', async () => {
    const from = await nth(41);
    await env.pool.query(`delete from audit_events where tenant_id = $1 and global_position >= $2`, [
      t.tenantId,
      from.p,
    ]);
    expect(await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).toMatchObject({
      ok: false,
      reason: 'checkpoint_beyond_chain',
    });
  });

  it('rewriting a row and recomputing every hash after it is caught by the signed checkpoints', async () => {
    const target = await nth(12);
    const r = await env.pool.query(
      `select ${AUDIT_COLUMNS} from audit_events where tenant_id = $1 order by global_position`,
      [t.tenantId],
    );
    let head = emptyHead(t.tenantId);
    for (const row of r.rows.map(mapAuditRow)) {
      const entry = row.chainSeq === 12 ? { ...row, payload: '{"forged":true}' } : row;
      const next = appendToChain(head, entry);
      head = next.head;
      await env.pool.query(
        `update audit_events set payload = $3::json, hash = $4 where tenant_id = $1 and global_position = $2`,
        [t.tenantId, row.globalPosition, entry.payload, next.row!.hash],
      );
    }
    await env.pool.query(`update audit_chain_heads set hash = $2 where tenant_id = $1`, [t.tenantId, head.hash]);
    const cp15 = await nth(15);
    const result = await verifyAuditChain(env.runtime, t.tenantId, { config: env.config });
    expect(result).toMatchObject({
      ok: false,
      reason: 'checkpoint_mismatch',
      firstBrokenAt: cp15.p,
      firstBrokenSeq: 15,
    });
    expect(target.s).toBe(12);
    await env.pool.query(
      `update audit_chain_heads h set hash = p.hash from audit_pristine p where h.tenant_id = $1 and p.tenant_id = $1 and p.chain_seq = h.seq`,
      [t.tenantId],
    );
  });

  it('keel audit verify prints the verdict and exits 1 on a broken chain', async () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += String(d)));
    expect(await auditVerifyCommand(env.runtime, ['--tenant', t.tenantId], out, { config: env.config })).toBe(0);
    expect(text).toContain('OK — 46 rows, 9/9 signed checkpoints verified');
    const target = await nth(30);
    await env.pool.query(`update audit_events set type = 'RoleRevoked' where tenant_id = $1 and global_position = $2`, [
      t.tenantId,
      target.p,
    ]);
    text = '';
    expect(await auditVerifyCommand(env.runtime, { tenant: t.tenantId, json: true }, out, { config: env.config })).toBe(
      1,
    );
    expect(JSON.parse(text)).toMatchObject({ ok: false, firstBrokenAt: target.p });
    expect(await auditVerifyCommand(env.runtime, [], out, { config: env.config })).toBe(2);
  });
});
