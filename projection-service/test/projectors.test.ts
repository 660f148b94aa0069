import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresBus, streamName } from '@keel/shared-events';
import type { EventBus } from '@keel/shared-events';
import { verifyAuditChain, startProjectors } from '../src/index.ts';
import { checkpointStaleHeads } from '../src/audit/store.ts';
import { withWriteTx } from '../src/read/tenant-tx.ts';
import type { ProjectorsHandle } from '../src/index.ts';
import { createTenant, ingest, integrationActivity, testEnv, testLogger, waitForProjection } from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

describe('projectors on the PostgreSQL bus', () => {
  let env: TestEnv;
  let bus: EventBus;
  let projectors: ProjectorsHandle;
  let a: TestTenant;
  let b: TestTenant;

  beforeAll(async () => {
    env = await testEnv('projectors');
    a = await createTenant(env, 'A');
    b = await createTenant(env, 'B');
    await ingest(env, a.tenantId, 23);
    await integrationActivity(env, a.tenantId);
    await ingest(env, b.tenantId, 7);
    bus = createPostgresBus({ store: env.store, pool: env.pool, logger: testLogger, pollIntervalMs: 10 });
    projectors = await startProjectors(env.runtime, bus, { config: env.config });
    await projectors.ready;
    await waitForProjection(env, 'audit');
    await waitForProjection(env, 'dashboard');
  });
  afterAll(async () => {
    await projectors?.stop();
    await bus?.close();
    await env?.close();
  });

  it('writes one audit row per event, per tenant, in a gap-free chain', async () => {
    const counts = await env.pool.query(
      `select tenant_id, count(*)::int as n, min(chain_seq)::int as lo, max(chain_seq)::int as hi from audit_events group by tenant_id`,
    );
    const stored = await env.pool.query(`select tenant_id, count(*)::int as n from keel_events group by tenant_id`);
    const byTenant = new Map(counts.rows.map((r) => [r.tenant_id, r]));
    for (const s of stored.rows) {
      expect(byTenant.get(s.tenant_id)).toMatchObject({ n: s.n, lo: 1, hi: s.n });
    }
    expect(stored.rows.length).toBe(2);
  });

  it('keeps the payload as stored and records who, what, when and to what', async () => {
    const r = await env.pool.query(
      `select a.*, a.payload::text as text from audit_events a where tenant_id = $1 and type = 'ConnectorInstalled'`,
      [a.tenantId],
    );
    expect(r.rows).toHaveLength(1);
    const row = r.rows[0];
    expect(row).toMatchObject({
      actor_kind: 'apiKey',
      actor_id: 'k-test',
      subject: 'connector:c1',
      stream_id: streamName('connector', a.tenantId, 'c1'),
    });
    // The encrypted credentials stay as the store holds them.
    expect(JSON.parse(row.text).credentials).toBe('enc:secret');
  });

  it('signs a checkpoint every N rows of a chain, and the chain verifies', async () => {
    const n = (await env.pool.query(`select count(*)::int as n from audit_events where tenant_id = $1`, [a.tenantId]))
      .rows[0].n;
    const cps = await env.pool.query(`select seq::int from audit_checkpoints where tenant_id = $1 order by seq`, [
      a.tenantId,
    ]);
    expect(cps.rows.map((r) => r.seq)).toEqual(Array.from({ length: Math.floor(n / 5) }, (_, i) => (i + 1) * 5));
    const result = await verifyAuditChain(env.runtime, a.tenantId, { config: env.config });
    expect(result).toMatchObject({
      ok: true,
      checked: n,
      checkpoints: { checked: cps.rows.length, total: cps.rows.length },
    });
    expect((await verifyAuditChain(env.runtime, b.tenantId, { config: env.config })).ok).toBe(true);
  });

  it('signs time-based checkpoints for chains that grew since their last one', async () => {
    const before = await env.pool.query(
      `select tenant_id, seq::int, checkpoint_seq::int from audit_chain_heads order by tenant_id`,
    );
    const grown = before.rows.filter((r) => r.seq > r.checkpoint_seq);
    expect(grown.length).toBeGreaterThan(0);
    // "Older than 0 ms": every grown chain is due now.
    const signed = await withWriteTx(env.pool, (c) => checkpointStaleHeads(c, env.config.signer, 0));
    expect(signed).toBe(grown.length);
    for (const g of grown) {
      const cp = await env.pool.query(
        `select seq::int from audit_checkpoints where tenant_id = $1 order by seq desc limit 1`,
        [g.tenant_id],
      );
      expect(cp.rows[0].seq).toBe(g.seq);
      const v = await verifyAuditChain(env.runtime, g.tenant_id, { config: env.config });
      expect(v.ok).toBe(true);
      expect(v.checkpoints.checked).toBe(v.checkpoints.total);
    }
    // Nothing grew since: nothing to sign.
    expect(await withWriteTx(env.pool, (c) => checkpointStaleHeads(c, env.config.signer, 0))).toBe(0);
  });

  it('builds the dashboard models', async () => {
    const runs = await env.pool.query(
      `select run_id, status, steps_succeeded, steps_failed, retries_scheduled, last_error from dash_flow_runs where tenant_id = $1 order by run_id`,
      [a.tenantId],
    );
    expect(runs.rows).toEqual([
      {
        run_id: 'r1',
        status: 'succeeded',
        steps_succeeded: 2,
        steps_failed: 0,
        retries_scheduled: 0,
        last_error: null,
      },
      {
        run_id: 'r2',
        status: 'failed',
        steps_succeeded: 1,
        steps_failed: 2,
        retries_scheduled: 1,
        last_error: 'gave up',
      },
    ]);
    const c = await env.pool.query(
      `select successes::int, failures::int, circuit, last_error from dash_connectors where tenant_id = $1`,
      [a.tenantId],
    );
    expect(c.rows).toEqual([{ successes: 1, failures: 2, circuit: 'closed', last_error: 'HTTP 502 from CRM' }]);
    const w = await env.pool.query(
      `select pending::int, succeeded::int, failed::int, dead_lettered::int from dash_webhook_endpoints where tenant_id = $1`,
      [a.tenantId],
    );
    expect(w.rows).toEqual([{ pending: 1, succeeded: 1, failed: 1, dead_lettered: 0 }]);
    const rates = await env.pool.query(
      `select event_type, sum(count)::int as n from dash_ingest_rates where tenant_id = $1 group by event_type order by event_type`,
      [a.tenantId],
    );
    expect(rates.rows.find((r) => r.event_type === 'RecordIngested')?.n).toBe(26);
    const bRuns = await env.pool.query(`select count(*)::int as n from dash_flow_runs where tenant_id = $1`, [
      b.tenantId,
    ]);
    expect(bRuns.rows[0].n).toBe(0);
  });

  it('applies new events as they come, once', async () => {
    const before = (await env.pool.query(`select count(*)::int as n from audit_events`)).rows[0].n;
    const pos = await ingest(env, b.tenantId, 5, 100);
    await waitForProjection(env, 'audit', pos);
    const after = (await env.pool.query(`select count(*)::int as n from audit_events`)).rows[0].n;
    expect(after - before).toBe(5);
    const dup = await env.pool.query(
      `select count(*)::int as n from (select event_id from audit_events group by event_id having count(*) > 1) d`,
    );
    expect(dup.rows[0].n).toBe(0);
  });
});
