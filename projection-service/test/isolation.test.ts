import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createPostgresBus, deniedStream } from '@keel/shared-events';
import type { EventBus } from '@keel/shared-events';
import { projectionTables } from '../src/db/schema.ts';
import { startProjectors } from '../src/index.ts';
import type { ProjectorsHandle } from '../src/index.ts';
import { withTenant } from '../src/read/tenant-tx.ts';
import {
  auth,
  createTenant,
  ingest,
  integrationActivity,
  testApp,
  testEnv,
  testLogger,
  waitForProjection,
} from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

describe('tenant isolation', () => {
  let env: TestEnv;
  let bus: EventBus;
  let projectors: ProjectorsHandle;
  let app: FastifyInstance;
  let a: TestTenant;
  let b: TestTenant;
  const readModels = [...projectionTables.audit, ...projectionTables.dashboard, 'audit_checkpoints'];

  beforeAll(async () => {
    env = await testEnv('isolation');
    a = await createTenant(env, 'A');
    b = await createTenant(env, 'B');
    for (const t of [a, b]) {
      await ingest(env, t.tenantId, 12);
      await integrationActivity(env, t.tenantId);
    }
    bus = createPostgresBus({ store: env.store, pool: env.pool, logger: testLogger, pollIntervalMs: 10 });
    projectors = await startProjectors(env.runtime, bus, { config: env.config });
    await waitForProjection(env, 'audit');
    await waitForProjection(env, 'dashboard');
    app = await testApp(env);
  });
  afterAll(async () => {
    await app?.close();
    await projectors?.stop();
    await bus?.close();
    await env?.close();
  });

  it('every read-model table holds rows of both tenants (so the checks below can fail)', async () => {
    for (const table of readModels) {
      const r = await env.pool.query(`select count(distinct tenant_id)::int as n from ${table}`);
      expect(r.rows[0].n, table).toBe(2);
    }
  });

  it('row-level security: a query that forgets the tenant filter sees only the transaction tenant', async () => {
    for (const table of readModels) {
      const seen = await withTenant(env.pool, a.tenantId, (c) => c.query(`select distinct tenant_id from ${table}`));
      expect(seen.rows, table).toEqual([{ tenant_id: a.tenantId }]);
    }
  });

  it('row-level security: with no tenant set, the reader sees nothing at all', async () => {
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      await c.query(`set local role keel_reader`);
      for (const table of readModels) {
        const r = await c.query(`select count(*)::int as n from ${table}`);
        expect(r.rows[0].n, table).toBe(0);
      }
      await c.query('rollback');
    } finally {
      c.release();
    }
  });

  it('the tenant setting does not outlive its transaction on a pooled connection', async () => {
    await withTenant(env.pool, a.tenantId, async () => undefined);
    // Pool of 10: run enough queries to reuse every connection.
    const settings = await Promise.all(
      Array.from({ length: 20 }, () =>
        env.pool.query(`select current_setting('keel.tenant_id', true) as t, current_user as u`),
      ),
    );
    for (const s of settings) {
      expect(s.rows[0].t || null).toBeNull();
      expect(s.rows[0].u).not.toBe('keel_reader');
    }
  });

  it('every audit_* and dash_* table has row-level security on (a new table without it fails here)', async () => {
    const r = await env.pool.query(
      `select relname, relrowsecurity from pg_class where relkind = 'r' and relnamespace = 'public'::regnamespace
         and (relname like 'audit\\_%' or relname like 'dash\\_%')`,
    );
    expect(r.rows.length).toBeGreaterThanOrEqual(readModels.length);
    for (const row of r.rows) expect(row.relrowsecurity, row.relname).toBe(true);
  });

  it("a key of one tenant gets 404 on another tenant's read routes, and the attempt is audited", async () => {
    const paths = [
      `/v1/tenants/${b.tenantId}/audit`,
      `/v1/tenants/${b.tenantId}/audit/export`,
      `/v1/tenants/${b.tenantId}/audit/verify`,
      `/v1/tenants/${b.tenantId}/dashboard/flow-runs`,
      `/v1/tenants/${b.tenantId}/streams/tenant-${b.tenantId}-main`,
    ];
    for (const url of paths) {
      const res = await app.inject({ method: 'GET', url, headers: auth(a.keys.owner) });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().error.code).toBe('NOT_FOUND');
      expect(res.body).not.toContain(b.tenantId.slice(0, 0) + 'TenantCreated');
    }
    const denied = await env.store.readStream(deniedStream(a.tenantId));
    expect(denied.length).toBe(paths.length);
    expect(denied[0]!.data).toMatchObject({ targetTenantId: b.tenantId, reason: 'cross-tenant', method: 'GET' });
  });

  it("a stream of another tenant is 404 even through the caller's own tenant route", async () => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/streams/tenant-${b.tenantId}-main`,
      headers: auth(a.keys.owner),
    });
    expect(res.statusCode).toBe(404);
  });

  it("an audit page never holds another tenant's rows", async () => {
    const res = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/audit?limit=1000`,
      headers: auth(a.keys.auditor),
    });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as { streamId: string }[];
    expect(items.length).toBeGreaterThan(20);
    for (const i of items) expect(i.streamId).toContain(a.tenantId);
  });

  it('roles: viewers read dashboards but not the audit trail; operators replay streams', async () => {
    const audit = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/audit`,
      headers: auth(a.keys.viewer),
    });
    expect(audit.statusCode).toBe(403);
    const dash = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/dashboard`,
      headers: auth(a.keys.viewer),
    });
    expect(dash.statusCode).toBe(200);
    const stream = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${a.tenantId}/streams/tenant-${a.tenantId}-main`,
      headers: auth(a.keys.operator),
    });
    expect(stream.statusCode).toBe(200);
    const noKey = await app.inject({ method: 'GET', url: `/v1/tenants/${a.tenantId}/dashboard` });
    expect(noKey.statusCode).toBe(401);
  });
});
