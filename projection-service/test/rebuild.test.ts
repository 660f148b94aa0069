import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createPostgresBus } from '@keel/shared-events';
import type { EventBus } from '@keel/shared-events';
import {
  ChainMismatchError,
  RebuildBusyError,
  RebuildInterruptedError,
  projectionsRebuildCommand,
  rebuildProjection,
  startProjectors,
  verifyAuditChain,
} from '../src/index.ts';
import type { ProjectorsHandle, ProjectionName } from '../src/index.ts';
import {
  ADMIN_KEY,
  auth,
  createTenant,
  dumpTable,
  ingest,
  integrationActivity,
  modelTables,
  testApp,
  testEnv,
  testLogger,
  waitForProjection,
} from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

describe('rebuilding projections', () => {
  let env: TestEnv;
  let bus: EventBus;
  let projectors: ProjectorsHandle;
  let app: FastifyInstance;
  let a: TestTenant;
  let b: TestTenant;

  const dump = async (p: ProjectionName) => {
    const out: Record<string, unknown[]> = {};
    for (const [table, order] of modelTables[p]) out[table] = await dumpTable(env.pool, table, order);
    return out;
  };
  const caughtUp = async () => {
    await waitForProjection(env, 'audit');
    await waitForProjection(env, 'dashboard');
  };

  beforeAll(async () => {
    env = await testEnv('rebuild');
    a = await createTenant(env, 'A');
    b = await createTenant(env, 'B');
    await ingest(env, a.tenantId, 150);
    await integrationActivity(env, a.tenantId);
    await ingest(env, b.tenantId, 60);
    await integrationActivity(env, b.tenantId);
    bus = createPostgresBus({ store: env.store, pool: env.pool, logger: testLogger, pollIntervalMs: 10 });
    projectors = await startProjectors(env.runtime, bus, { config: env.config });
    await caughtUp();
    app = await testApp(env);
  });
  afterAll(async () => {
    await app?.close();
    await projectors?.stop();
    await bus?.close();
    await env?.close();
  });

  /** Every read-model table's constraints, index definitions and storage options. */
  async function tableShapes() {
    const r = await env.pool.query(
      `select c.relname as table, c.reloptions,
              (select array_agg(conname || ' ' || pg_get_constraintdef(k.oid) order by conname)
                 from pg_constraint k where k.conrelid = c.oid) as constraints,
              (select array_agg(pg_get_indexdef(x.indexrelid) order by pg_get_indexdef(x.indexrelid)) from pg_index x where x.indrelid = c.oid) as indexes
         from pg_class c
        where c.relkind = 'r' and c.relnamespace = current_schema()::regnamespace
          and (c.relname like 'audit\\_%' or c.relname like 'dash\\_%')
        order by c.relname`,
    );
    expect(r.rows.find((t) => t.table === 'audit_events')?.constraints).toContain(
      'audit_events_pkey PRIMARY KEY (tenant_id, global_position)',
    );
    return r.rows;
  }

  it.each(['audit', 'dashboard'] as const)(
    'the rebuilt %s model equals the incrementally built one',
    async (projection) => {
      const before = await dump(projection);
      const shapeBefore = await tableShapes();
      expect(Object.values(before).every((rows) => rows.length > 0)).toBe(true);
      const progress: number[] = [];
      const result = await rebuildProjection(env.runtime, projection, {
        batchSize: 50,
        onProgress: (p) => progress.push(p.events),
      });
      expect(result.totalEvents).toBeGreaterThan(250);
      expect(progress.length).toBeGreaterThan(5);
      expect(await dump(projection)).toEqual(before);
      // The shadows are gone; the live tables have their canonical index names back.
      const leftovers = await env.pool.query(`select relname from pg_class where relname like '%\\_\\_rebuild%'`);
      expect(leftovers.rows).toEqual([]);
      const idx = await env.pool.query(`select indexname from pg_indexes where tablename = 'audit_events' order by 1`);
      expect(idx.rows.map((r) => r.indexname)).toEqual([
        'audit_events_actor',
        'audit_events_correlation',
        'audit_events_pkey',
        'audit_events_recorded',
        'audit_events_stream',
        'audit_events_type',
      ]);
      // Keys, indexes and table options exactly as the migrations made them (keys are built as
      // plain indexes and attached; autovacuum, off while the shadow filled, is back on).
      expect(await tableShapes()).toEqual(shapeBefore);
    },
  );

  it('a rebuild while events keep arriving and the live projector keeps running loses and doubles nothing', async () => {
    let writing = true;
    let n = 1000;
    const writer = (async () => {
      while (writing) {
        await ingest(env, n % 2 ? a.tenantId : b.tenantId, 7, n);
        n += 7;
      }
    })();
    const [audit, dashboard] = await Promise.all([
      rebuildProjection(env.runtime, 'audit', { batchSize: 40 }),
      rebuildProjection(env.runtime, 'dashboard', { batchSize: 40 }),
    ]);
    writing = false;
    await writer;
    await caughtUp();
    expect(audit.totalEvents).toBeGreaterThan(0);
    expect(dashboard.totalEvents).toBeGreaterThan(0);
    const mixed = { audit: await dump('audit'), dashboard: await dump('dashboard') };
    // One row per stored event, and a chain that verifies.
    const counts = await env.pool.query(
      `select (select count(*)::int from keel_events) as events, (select count(*)::int from audit_events) as rows`,
    );
    expect(counts.rows[0].rows).toBe(counts.rows[0].events);
    for (const t of [a, b])
      expect((await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).ok).toBe(true);
    // And a rebuild from scratch with nothing arriving gives exactly the same model.
    await rebuildProjection(env.runtime, 'audit');
    await rebuildProjection(env.runtime, 'dashboard');
    expect({ audit: await dump('audit'), dashboard: await dump('dashboard') }).toEqual(mixed);
    // The swapped-in tables come with planner statistics (ANALYZE before the swap).
    const analyzed = await env.pool.query<{ relname: string }>(
      `select relname from pg_stat_user_tables where relname in ('audit_events', 'audit_chain_heads') and last_analyze is not null`,
    );
    expect(analyzed.rows.map((r) => r.relname).sort()).toEqual(['audit_chain_heads', 'audit_events']);
  });

  it('an interrupted rebuild leaves the live model serving and resumes where it stopped', async () => {
    const before = await dump('audit');
    const controller = new AbortController();
    await expect(
      rebuildProjection(env.runtime, 'audit', {
        batchSize: 30,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.events >= 90) controller.abort();
        },
      }),
    ).rejects.toBeInstanceOf(RebuildInterruptedError);
    const state = await env.pool.query(
      `select status, position::int, events::int from projection_rebuilds where projection = 'audit'`,
    );
    expect(state.rows[0]).toMatchObject({ status: 'running' });
    expect(state.rows[0].events).toBeGreaterThanOrEqual(90);
    const shadowRows = await env.pool.query('select count(*)::int as n from audit_events__rebuild');
    expect(shadowRows.rows[0].n).toBe(state.rows[0].events);
    // Meanwhile the live model is untouched and serves.
    expect(await dump('audit')).toEqual(before);
    const page = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/audit?limit=5`,
      headers: auth(a.keys.auditor),
    });
    expect(page.json().items).toHaveLength(5);

    // As if an earlier run had also been killed between building the key's index and attaching it.
    await env.pool.query(
      'create unique index audit_events_pkey__rebuild on audit_events__rebuild (tenant_id, global_position)',
    );
    const shape = await tableShapes();
    const resumed = await rebuildProjection(env.runtime, 'audit', { batchSize: 500 });
    expect(resumed.resumedFrom).toBe(state.rows[0].position);
    expect(resumed.events + state.rows[0].events).toBe(resumed.totalEvents);
    expect(await dump('audit')).toEqual(before);
    expect((await tableShapes()).filter((t) => !t.table.endsWith('__rebuild'))).toEqual(
      shape.filter((t) => !t.table.endsWith('__rebuild')),
    );
  });

  it('one rebuild of a projection at a time', async () => {
    const results = await Promise.allSettled([
      rebuildProjection(env.runtime, 'dashboard', { batchSize: 20 }),
      rebuildProjection(env.runtime, 'dashboard', { batchSize: 20 }),
    ]);
    const rejected = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(rejected).toHaveLength(1);
    expect(rejected[0]!.reason).toBeInstanceOf(RebuildBusyError);
  });

  it('keel projections rebuild draws progress on stderr and reports events/s', async () => {
    const out = new PassThrough();
    const progress = new PassThrough();
    let text = '';
    let bar = '';
    out.on('data', (d) => (text += String(d)));
    progress.on('data', (d) => (bar += String(d)));
    expect(await projectionsRebuildCommand(env.runtime, ['dashboard'], out, { progress })).toBe(0);
    expect(text).toMatch(
      /^rebuilt dashboard: [\d,]+ events up to position \d+ in [\d.]+ s \([\d,]+ events\/s\); swapped in/,
    );
    expect(bar).toMatch(/dashboard \[[#-]{30}\] +[\d.]+% +[\d,]+ events +[\d,]+ ev\/s +ETA/);
    expect(await projectionsRebuildCommand(env.runtime, ['nope'], out)).toBe(2);
  });

  it('the admin route starts a rebuild in the background and reports it', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/projections/dashboard/rebuild',
      headers: auth(ADMIN_KEY),
    });
    expect(res.statusCode).toBe(202);
    const deadline = Date.now() + 30_000;
    let rebuild: { status: string } | null = null;
    while (Date.now() < deadline) {
      const s = await app.inject({ method: 'GET', url: '/v1/admin/projections', headers: auth(ADMIN_KEY) });
      rebuild = s.json().items.find((i: { projection: string }) => i.projection === 'dashboard').rebuild;
      if (
        rebuild?.status === 'done' &&
        !s.json().items.find((i: { projection: string }) => i.projection === 'dashboard').progress
      )
        break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(rebuild?.status).toBe('done');
    const forbidden = await app.inject({
      method: 'POST',
      url: '/v1/admin/projections/dashboard/rebuild',
      headers: auth(a.keys.owner),
    });
    expect(forbidden.statusCode).toBe(403);
  });

  it('refuses to swap in an audit chain that no longer matches the signed checkpoints (the store was altered)', async () => {
    const before = await dump('audit');
    const victim = await env.pool.query(
      `select global_position from keel_events where tenant_id = $1 and type = 'RecordIngested' order by global_position limit 1 offset 2`,
      [a.tenantId],
    );
    const pos = victim.rows[0].global_position;
    const original = await env.pool.query('select data from keel_events where global_position = $1', [pos]);
    await env.pool.query(`update keel_events set data = replace(data, '"c2"', '"forged"') where global_position = $1`, [
      pos,
    ]);
    try {
      await expect(rebuildProjection(env.runtime, 'audit')).rejects.toBeInstanceOf(ChainMismatchError);
      expect(await dump('audit')).toEqual(before);
      const st = await env.pool.query(`select status, error from projection_rebuilds where projection = 'audit'`);
      expect(st.rows[0].status).toBe('failed');
      expect(st.rows[0].error).toMatch(/signed checkpoint/);
    } finally {
      await env.pool.query('update keel_events set data = $2 where global_position = $1', [pos, original.rows[0].data]);
    }
  });
});
