import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createPostgresBus, streamName } from '@keel/shared-events';
import type { EventBus } from '@keel/shared-events';
import { startProjectors, streamShowCommand } from '../src/index.ts';
import { PassThrough } from 'node:stream';
import { AUDIT_COLUMNS, mapAuditRow } from '../src/audit/query.ts';
import { CSV_HEADER, toCsvLine, toNdjsonLine } from '../src/audit/row.ts';
import type { ProjectorsHandle } from '../src/index.ts';
import {
  ADMIN_KEY,
  auth,
  createTenant,
  ingest,
  integrationActivity,
  record,
  testApp,
  testEnv,
  testLogger,
  waitForProjection,
} from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

interface Item {
  position: number;
  chainSeq: number;
  type: string;
  streamId: string;
  actor: { kind: string; id: string };
  correlationId: string | null;
  recordedAt: string;
  payload: Record<string, unknown>;
  hash: string;
}

describe('read-side HTTP API', () => {
  let env: TestEnv;
  let bus: EventBus;
  let projectors: ProjectorsHandle;
  let app: FastifyInstance;
  let t: TestTenant;
  let other: TestTenant;
  let all: Item[];

  const get = (url: string, key = t.keys.auditor) => app.inject({ method: 'GET', url, headers: auth(key) });
  const base = () => `/v1/tenants/${t.tenantId}`;

  beforeAll(async () => {
    env = await testEnv('api');
    t = await createTenant(env, 'T');
    other = await createTenant(env, 'O');
    await ingest(env, t.tenantId, 120);
    await integrationActivity(env, t.tenantId);
    await ingest(env, other.tenantId, 30);
    // Text that export formatting must get exactly right.
    await env.store.appendToStream(streamName('record', t.tenantId, 'tricky-1'), [
      record(
        t.tenantId,
        'tricky',
        '1',
        {
          q: 'say "hi", then\nnew line\r\n\ttab \\ back',
          ctl: '\u0001\u001f\u007f',
          uni: 'zürich 東京 😀 \u2028',
          comma: 'a,b',
        },
        'corr,"quoted"',
      ),
    ]);
    // A correlation id a spreadsheet would run as a formula: the CSV export guards it.
    await env.store.appendToStream(streamName('record', t.tenantId, 'tricky-2'), [
      record(t.tenantId, 'tricky', '2', { n: 2 }, '=HYPERLINK("http://evil","x")'),
    ]);
    bus = createPostgresBus({ store: env.store, pool: env.pool, logger: testLogger, pollIntervalMs: 10 });
    projectors = await startProjectors(env.runtime, bus, { config: env.config });
    await waitForProjection(env, 'audit');
    await waitForProjection(env, 'dashboard');
    app = await testApp(env);
    all = (await get(`${base()}/audit?limit=1000`)).json().items;
  });
  afterAll(async () => {
    await app?.close();
    await projectors?.stop();
    await bus?.close();
    await env?.close();
  });

  describe('audit trail', () => {
    it('lists every event of the tenant, newest first', async () => {
      const count = (
        await env.pool.query('select count(*)::int as n from keel_events where tenant_id = $1', [t.tenantId])
      ).rows[0].n;
      expect(all).toHaveLength(count);
      const positions = all.map((i) => i.position);
      expect(positions).toEqual([...positions].sort((x, y) => y - x));
      expect(all.at(-1)!.type).toBe('TenantCreated');
      expect(all[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    });

    it('pages with stable keyset cursors: no gaps, no duplicates, even while new events arrive', async () => {
      const seen: number[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await get(`${base()}/audit?limit=17${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.statusCode).toBe(200);
        const body = res.json() as { items: Item[]; nextCursor: string | null };
        seen.push(...body.items.map((i) => i.position));
        cursor = body.nextCursor;
        // New events landing between pages must not shift what the cursor points at.
        if (pages++ === 1) await waitForProjection(env, 'audit', await ingest(env, t.tenantId, 3, 5000));
      } while (cursor);
      expect(seen).toEqual(all.map((i) => i.position));
    });

    it('filters by type, actor, stream, correlation and time', async () => {
      all = (await get(`${base()}/audit?limit=1000`)).json().items;
      const f = async (q: string) =>
        ((await get(`${base()}/audit?limit=1000&${q}`)).json().items as Item[]).map((i) => i.position);
      const pick = (pred: (i: Item) => boolean) => all.filter(pred).map((i) => i.position);
      expect(await f('type=StepFailed')).toEqual(pick((i) => i.type === 'StepFailed'));
      expect(await f('type=StepFailed,FlowRunStarted')).toEqual(
        pick((i) => ['StepFailed', 'FlowRunStarted'].includes(i.type)),
      );
      expect(await f('actor=system:test')).toEqual(pick((i) => i.actor.kind === 'system' && i.actor.id === 'test'));
      expect(await f('actor=k-test')).toEqual(pick((i) => i.actor.id === 'k-test'));
      const run = streamName('run', t.tenantId, 'r2');
      expect(await f(`streamId=${run}`)).toEqual(pick((i) => i.streamId === run));
      expect(await f('correlationId=corr-3')).toEqual(pick((i) => i.correlationId === 'corr-3'));
      expect((await f('correlationId=corr-3')).length).toBe(10);
      const mid = all[Math.floor(all.length / 2)]!.recordedAt;
      const from = new Date(Date.parse(mid) - 1).toISOString();
      expect(await f(`from=${from}`)).toEqual(pick((i) => Date.parse(i.recordedAt) >= Date.parse(from)));
      expect(await f(`to=${from}`)).toEqual(pick((i) => Date.parse(i.recordedAt) < Date.parse(from)));
      expect(await f('type=TenantSuspended')).toEqual([]);
    });

    it('exports NDJSON and CSV, with the same rows as the pages', async () => {
      const nd = await get(`${base()}/audit/export?type=RecordIngested`);
      expect(nd.statusCode).toBe(200);
      expect(nd.headers['content-type']).toContain('application/x-ndjson');
      const lines = nd.body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Item);
      const pages = (await get(`${base()}/audit?limit=1000&type=RecordIngested`)).json().items as Item[];
      expect(lines).toEqual(pages);

      const csv = await get(`${base()}/audit/export?format=csv&type=FlowRunFailed`);
      expect(csv.headers['content-type']).toContain('text/csv');
      const rows = csv.body.trim().split('\r\n');
      expect(rows[0]).toBe(
        'position,chainSeq,eventId,streamId,streamPosition,type,schemaVersion,actorKind,actorId,subject,occurredAt,recordedAt,correlationId,causationId,payload,hash',
      );
      expect(rows).toHaveLength(2);
      expect(rows[1]).toContain('FlowRunFailed');
      expect(rows[1]).toContain('"{""error"":""gave up"",""runId"":""r2""}"');
    });

    it('formats export lines exactly as the row formatters do (NDJSON and CSV)', async () => {
      const rows = (
        await env.pool.query(
          `select ${AUDIT_COLUMNS} from audit_events where tenant_id = $1 order by global_position desc`,
          [t.tenantId],
        )
      ).rows.map(mapAuditRow);
      const nd = await get(`${base()}/audit/export`);
      expect(nd.body).toBe(rows.map(toNdjsonLine).join(''));
      const csv = await get(`${base()}/audit/export?format=csv`);
      expect(csv.body).toBe(CSV_HEADER + rows.map(toCsvLine).join(''));
      expect(nd.body).toContain('"correlationId":"corr,\\"quoted\\""');
      expect(csv.body).toContain(`"'=HYPERLINK(""http://evil"",""x"")"`);
      expect(nd.body).toContain('"correlationId":"=HYPERLINK(\\"http://evil\\",\\"x\\")"');
    });

    it('pages a time window newest first by recorded time, with cursors', async () => {
      all = (await get(`${base()}/audit?limit=1000`)).json().items;
      const times = [...new Set(all.map((i) => i.recordedAt))].sort();
      const from = times[1]!;
      const to = times[times.length - 1]!;
      const expected = all
        .filter((i) => i.recordedAt >= from && i.recordedAt < to)
        .sort((x, y) =>
          x.recordedAt === y.recordedAt ? y.position - x.position : x.recordedAt < y.recordedAt ? 1 : -1,
        )
        .map((i) => i.position);
      expect(expected.length).toBeGreaterThan(3);
      const seen: number[] = [];
      let cursor: string | null = null;
      do {
        const body = (
          await get(`${base()}/audit?limit=3&from=${from}&to=${to}${cursor ? `&cursor=${cursor}` : ''}`)
        ).json() as { items: Item[]; nextCursor: string | null };
        seen.push(...body.items.map((i) => i.position));
        cursor = body.nextCursor;
      } while (cursor);
      expect(seen).toEqual(expected);
      const exported = (await get(`${base()}/audit/export?from=${from}&to=${to}`)).body
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as Item).position);
      expect(exported).toEqual(expected);
    });

    const bad: [string, string][] = [
      ['malformed cursor', 'cursor=%%%'],
      ['garbage cursor', 'cursor=eyJub3QiOiJhIGN1cnNvciJ9'],
      ['unknown filter', 'tenantId=x'],
      ['inverted time range', 'from=2025-02-01&to=2025-01-01'],
      ['bad date', 'from=not-a-date'],
      ['zero limit', 'limit=0'],
      ['bad limit', 'limit=1e9'],
      ['unknown type', 'type=Nope'],
      ['repeated filter', 'type=RoleGranted&type=RoleRevoked'],
      ['sql in type', `type=${encodeURIComponent("RoleGranted' OR '1'='1")}`],
      ['sql in actor', `actor=${encodeURIComponent("x' OR 1=1 --")}`],
      ['sql in streamId', `streamId=${encodeURIComponent("record-x'; drop table audit_events; --")}`],
      ['sql in correlationId', `correlationId=${encodeURIComponent('1 UNION SELECT * FROM audit_events')}`],
      ['sql in from', `from=${encodeURIComponent("2025-01-01' OR '1'='1")}`],
      ['stream of another tenant', 'streamId=' + streamName('record', '0195a0a0-0000-7000-8000-0000000000ff', 'x')],
      ['negative minPosition', 'minPosition=-3'],
    ];
    it.each(bad)('%s → 400 with the stable error body', async (_name, q) => {
      for (const path of ['/audit', '/audit/export']) {
        const res = await get(`${base()}${path}?${q}`);
        expect(res.statusCode, `${path}?${q}`).toBe(400);
        const body = res.json();
        expect(body.error.code).toBe('VALIDATION_FAILED');
        expect(typeof body.error.message).toBe('string');
      }
    });

    it('caps huge limits instead of failing', async () => {
      const res = await get(`${base()}/audit?limit=100000000`);
      expect(res.statusCode).toBe(200);
      // The unit suite pins the cap (1000); here: a huge limit answers like the largest allowed one.
      const capped = await get(`${base()}/audit?limit=1000`);
      expect(res.json()).toEqual(capped.json());
    });

    it('minPosition waits for the projection, bounded', async () => {
      await projectors.stop();
      const pos = await ingest(env, t.tenantId, 1, 9000);
      const pending = get(`${base()}/audit?limit=1&minPosition=${pos}`);
      const restarted = startProjectors(env.runtime, bus, { config: env.config });
      const res = await pending;
      projectors = await restarted;
      expect(res.statusCode).toBe(200);
      expect(res.json().items[0].position).toBe(pos);
      // Far in the future: answered 503 after the bound (2 s in this suite), not hanging.
      const late = await get(`${base()}/audit?minPosition=${pos + 1_000_000}`);
      expect(late.statusCode).toBe(503);
      expect(late.json().error).toMatchObject({ code: 'PROJECTION_BEHIND', details: { minPosition: pos + 1_000_000 } });
    });
  });

  describe('replay debugging', () => {
    const run = () => streamName('run', t.tenantId, 'r2');
    it('folds a stream up to a revision', async () => {
      const res = await get(`/v1/tenants/${t.tenantId}/streams/${run()}?at=2`, t.keys.operator);
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.revision).toBe(2);
      expect(body.events).toHaveLength(3);
      expect(body.state).toMatchObject({
        status: 'running',
        steps: [
          { index: 0, status: 'succeeded' },
          { index: 1, status: 'failed', lastError: 'HTTP 500 from CRM' },
        ],
      });
      const end = (await get(`/v1/tenants/${t.tenantId}/streams/${run()}`, t.keys.operator)).json();
      expect(end.state.status).toBe('failed');
    });

    it('folds a stream up to an instant', async () => {
      const events = (await get(`/v1/tenants/${t.tenantId}/streams/${run()}`)).json().events as {
        recordedAt: string;
      }[];
      const at = events[1]!.recordedAt;
      const body = (await get(`/v1/tenants/${t.tenantId}/streams/${run()}?at=${encodeURIComponent(at)}`)).json();
      expect(body.events.every((e: { recordedAt: string }) => e.recordedAt <= at)).toBe(true);
      expect(body.events.length).toBeGreaterThanOrEqual(2);
      const before = await get(`/v1/tenants/${t.tenantId}/streams/${run()}?at=2000-01-01T00:00:00Z`);
      expect(before.json().events).toEqual([]);
    });

    it('gives the history with the state after each event and what changed', async () => {
      const res = await get(`/v1/tenants/${t.tenantId}/streams/${run()}/history`);
      const steps = res.json().steps as {
        event: { type: string };
        state: { status: string };
        changes: { path: string }[];
      }[];
      expect(steps.map((s) => s.event.type)).toEqual([
        'FlowRunStarted',
        'StepSucceeded',
        'StepFailed',
        'StepRetryScheduled',
        'StepFailed',
        'FlowRunFailed',
      ]);
      expect(steps[5]!.changes.map((c) => c.path)).toEqual(expect.arrayContaining(['status', 'error']));
      const tenantStream = await get(`/v1/tenants/${t.tenantId}/streams/${streamName('connector', t.tenantId, 'c1')}`);
      expect(tenantStream.json().state).toMatchObject({ name: 'CRM', hasCredentials: true });
      expect(tenantStream.body).not.toContain('enc:secret');
    });

    it('keel stream show prints the same state, and the history with what changed', async () => {
      const out = new PassThrough();
      let text = '';
      out.on('data', (d) => (text += String(d)));
      expect(await streamShowCommand(env.runtime, [run(), '--at', '2', '--json'], out)).toBe(0);
      const viaApi = (await get(`/v1/tenants/${t.tenantId}/streams/${run()}?at=2`, t.keys.operator)).json();
      const viaCli = JSON.parse(text);
      expect(viaCli.state).toEqual(viaApi.state);
      expect(viaCli.events).toEqual(viaApi.events);
      text = '';
      expect(await streamShowCommand(env.runtime, { _: [run()], history: true }, out)).toBe(0);
      expect(text).toContain('#5 FlowRunFailed');
      expect(text).toMatch(/~ status: "retrying" → "failed"/);
      text = '';
      expect(await streamShowCommand(env.runtime, [run(), '--at', 'soon'], out)).toBe(2);
      expect(await streamShowCommand(env.runtime, [streamName('run', t.tenantId, 'none')], out)).toBe(1);
    });

    it('answers 400 for a bad point and 404 for an unknown stream', async () => {
      for (const at of ['-1', 'yesterday', "1' or 1=1"]) {
        expect((await get(`/v1/tenants/${t.tenantId}/streams/${run()}?at=${encodeURIComponent(at)}`)).statusCode).toBe(
          400,
        );
      }
      expect((await get(`/v1/tenants/${t.tenantId}/streams/${run()}?bogus=1`)).statusCode).toBe(400);
      expect((await get(`/v1/tenants/${t.tenantId}/streams/${streamName('run', t.tenantId, 'nope')}`)).statusCode).toBe(
        404,
      );
      expect(
        (await get(`/v1/tenants/${t.tenantId}/streams/${streamName('run', t.tenantId, 'nope')}/history`)).statusCode,
      ).toBe(404);
    });
  });

  describe('dashboard', () => {
    it('serves flow runs, connectors, webhooks, deliveries and ingest rates', async () => {
      const v = t.keys.viewer;
      const runs = (await get(`${base()}/dashboard/flow-runs`, v)).json();
      expect(runs.items.map((r: { runId: string; status: string }) => [r.runId, r.status])).toEqual([
        ['r2', 'failed'],
        ['r1', 'succeeded'],
      ]);
      const failed = (await get(`${base()}/dashboard/flow-runs?status=failed&limit=1`, v)).json();
      expect(failed.items).toHaveLength(1);
      expect(failed.nextCursor).toBeNull();
      const page1 = (await get(`${base()}/dashboard/flow-runs?limit=1`, v)).json();
      const page2 = (await get(`${base()}/dashboard/flow-runs?limit=1&cursor=${page1.nextCursor}`, v)).json();
      expect(page2.items[0].runId).toBe('r1');

      const connectors = (await get(`${base()}/dashboard/connectors`, v)).json();
      expect(connectors.items).toEqual([
        expect.objectContaining({ connectorId: 'c1', successes: 1, failures: 2, circuit: 'closed' }),
      ]);
      const webhooks = (await get(`${base()}/dashboard/webhooks`, v)).json();
      // Pending: every RecordIngested since the endpoint was registered (3 orders, then the records other tests added) but two.
      const owed = (
        await get(
          `${base()}/audit?limit=1000&type=RecordIngested&streamId=${streamName('record', t.tenantId, 'order-0')}`,
        )
      ).json().items.length;
      expect(owed).toBe(1);
      const pendingList = (await get(`${base()}/dashboard/webhooks/deliveries?status=pending&limit=500`, v)).json()
        .items;
      expect(pendingList.length).toBeGreaterThanOrEqual(1);
      expect(webhooks.items[0]).toMatchObject({
        webhookId: 'w1',
        pending: pendingList.length,
        succeeded: 1,
        failed: 1,
        deadLettered: 0,
      });
      const failedDeliveries = (await get(`${base()}/dashboard/webhooks/deliveries?status=failed`, v)).json();
      expect(failedDeliveries.items).toEqual([
        expect.objectContaining({ status: 'failed', lastHttpStatus: 503, lastError: 'HTTP 503' }),
      ]);
      const rates = (await get(`${base()}/dashboard/ingest-rates?from=2000-01-01&to=2000-01-02`, v)).json();
      expect(rates.items).toEqual([]);
      const now = (await get(`${base()}/dashboard/ingest-rates`, v)).json();
      expect(now.totals.RecordIngested).toBeGreaterThanOrEqual(123);
      const overview = (await get(`${base()}/dashboard`, v)).json();
      expect(overview).toMatchObject({
        flowRuns: { failed: 1, succeeded: 1 },
        deliveries: { pending: pendingList.length, succeeded: 1, failed: 1 },
      });
    });

    it('refuses junk parameters with 400', async () => {
      const v = t.keys.viewer;
      for (const q of [
        '/flow-runs?status=on-fire',
        '/flow-runs?cursor=abc',
        '/flow-runs?limit=-1',
        '/webhooks/deliveries?status=x',
        '/ingest-rates?from=2025-02-01&to=2025-01-01',
        '/connectors?x=1',
        '?minPosition=abc',
      ]) {
        const res = await get(`${base()}/dashboard${q}`, v);
        expect(res.statusCode, q).toBe(400);
        expect(res.json().error.code).toBe('VALIDATION_FAILED');
      }
    });
  });

  describe('operations', () => {
    it('/ready includes the projections, and the admin route shows their lag', async () => {
      const ready = await app.inject({ method: 'GET', url: '/ready' });
      expect(ready.json().checks.projections).toBe('ok');
      expect(ready.json().projections.audit).toEqual({ position: expect.any(Number), lag: expect.any(Number) });
      expect(ready.json().projections.audit.position).toBeGreaterThan(0);
      // A projection further behind than allowed makes the process not ready, and says which.
      const allowed = env.config.readyMaxLag;
      env.config.readyMaxLag = -1;
      try {
        const behind = await app.inject({ method: 'GET', url: '/ready' });
        expect(behind.statusCode).toBe(503);
        expect(behind.json().checks.projections).toMatch(
          /^audit is \d+ events behind; dashboard is \d+ events behind$/,
        );
      } finally {
        env.config.readyMaxLag = allowed;
      }
      const status = await app.inject({ method: 'GET', url: '/v1/admin/projections', headers: auth(ADMIN_KEY) });
      expect(status.statusCode).toBe(200);
      expect(status.json().items.map((i: { projection: string }) => i.projection)).toEqual(['audit', 'dashboard']);
      const denied = await app.inject({ method: 'GET', url: '/v1/admin/projections', headers: auth(t.keys.owner) });
      expect(denied.statusCode).toBe(403);
      const unknown = await app.inject({
        method: 'POST',
        url: '/v1/admin/projections/nope/rebuild',
        headers: auth(ADMIN_KEY),
      });
      expect(unknown.statusCode).toBe(404);
    });

    it('documents the routes in the OpenAPI document', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json();
      for (const p of [
        '/v1/tenants/{tenantId}/audit',
        '/v1/tenants/{tenantId}/audit/export',
        '/v1/tenants/{tenantId}/audit/verify',
        '/v1/tenants/{tenantId}/streams/{streamId}',
        '/v1/tenants/{tenantId}/streams/{streamId}/history',
        '/v1/tenants/{tenantId}/dashboard/flow-runs',
      ]) {
        expect(doc.paths[p], p).toBeDefined();
      }
    });
  });

  it('never shows the other tenant (sanity: it has data)', async () => {
    const res = await get(`/v1/tenants/${other.tenantId}/audit`, other.keys.auditor);
    expect(res.json().items.length).toBeGreaterThan(0);
  });
});
