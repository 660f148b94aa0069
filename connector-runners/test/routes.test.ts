import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { createBaseApp, uuidv7, type EventBus } from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';
import { mountConnectorRunners, runIdOf, startRunners, type RunnersHandle } from '../src/index.ts';
import {
  apiKey,
  append,
  createTenant,
  eventually,
  ingest,
  openSecretOf,
  postgresBusKind,
  testConfig,
  world,
  type World,
} from './harness.ts';
import { startServer, type TestServer } from './servers.ts';

/**
 * The runners' routes through a real app (createBaseApp + mountConnectorRunners): the live run log
 * over a real socket, dry runs, authentication and tenant isolation.
 */
describe('run log (SSE) and dry-run routes', () => {
  let w: World;
  let opened: { bus: EventBus; close(): Promise<void> } | undefined;
  let runners: RunnersHandle;
  let app: FastifyInstance;
  let base: string;
  let api: TestServer;
  let sinkUrl: string;
  let sink: pg.Pool;
  let tenant: string;
  let key: string;
  let flowId: string;
  let db: string;
  let httpId: string;
  let release: (() => void) | undefined;

  beforeAll(async () => {
    w = await world('routes');
    sinkUrl = await freshDatabase('routesink');
    sink = new pg.Pool({ connectionString: sinkUrl, max: 2 });
    sink.on('error', () => undefined);
    await sink.query('create table items (id text primary key, label text)');
    // The API answers once the test says so: the run is visibly in progress meanwhile.
    api = await startServer((_req, res) => {
      const go = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"accepted":true}');
      };
      if (release === undefined) go();
      else {
        const previous = release;
        release = () => {
          previous();
          go();
        };
      }
    });
    tenant = await createTenant(w);
    key = await apiKey(w, tenant, 'owner');
    const http = uuidv7();
    httpId = http;
    db = uuidv7();
    flowId = uuidv7();
    await append(w, `connector-${tenant}-${http}`, [
      {
        type: 'ConnectorInstalled',
        tenantId: tenant,
        data: {
          connectorId: http,
          kind: 'http',
          name: 'api',
          config: { baseUrl: api.url, auth: { type: 'bearer' } },
          credentials: await w.keyring.encryptField(tenant, 'bearer-secret'),
        },
      },
    ]);
    await append(w, `connector-${tenant}-${db}`, [
      {
        type: 'ConnectorInstalled',
        tenantId: tenant,
        data: {
          connectorId: db,
          kind: 'postgres',
          name: 'db',
          config: {},
          credentials: await w.keyring.encryptField(tenant, sinkUrl),
        },
      },
    ]);
    await append(w, `flow-${tenant}-${flowId}`, [
      {
        type: 'FlowDefined',
        tenantId: tenant,
        data: {
          flowId,
          name: 'items',
          definition: {
            trigger: { eventType: 'RecordIngested' },
            captureBodies: true,
            steps: [
              {
                type: 'transform',
                expression: '{ "id": data.externalId, "label": $uppercase(data.payload.label), "password": "p" }',
              },
              { type: 'http', connectorId: http, url: '/items/{{id}}' },
              { type: 'transform', expression: '{ "id": $steps[0].id, "label": $steps[0].label }' },
              { type: 'postgres', connectorId: db, table: 'items', key: ['id'] },
            ],
          },
        },
      },
      { type: 'FlowEnabled', tenantId: tenant, data: { flowId } },
    ]);
    opened = await postgresBusKind.open(w);
    runners = await startRunners(w.runtime, opened.bus, {
      config: testConfig(),
      openSecret: openSecretOf(w),
      runners: ['flows'],
    });
    await runners.ready;
    app = await createBaseApp({ logLevel: 'silent', defaultMetrics: false });
    await mountConnectorRunners(app, w.runtime, { openSecret: openSecretOf(w), ssePollMs: 20 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    await app?.close();
    await runners?.stop();
    await opened?.close();
    await api?.close();
    await sink?.end();
    await w?.close();
  });

  /** Reads an SSE stream until it ends; `onFrame` sees each frame as it arrives. */
  function readSse(
    path: string,
    onFrame: (f: { id?: string; event: string; data: unknown }) => void,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; contentType: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        `${base}${path}`,
        { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', ...headers } },
        (res) => {
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buf += chunk;
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              const f: { id?: string; event: string; data: unknown } = { event: 'message', data: undefined };
              let isFrame = false;
              for (const line of block.split('\n')) {
                if (line.startsWith('id: ')) f.id = line.slice(4);
                else if (line.startsWith('event: ')) f.event = line.slice(7);
                else if (line.startsWith('data: ')) {
                  f.data = JSON.parse(line.slice(6));
                  isFrame = true;
                }
              }
              if (isFrame) onFrame(f);
            }
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('streams a run live: steps appear while the run is still going, and the stream ends with the run', async () => {
    release = () => undefined; // hold the API's answers
    const [trigger] = await ingest(w, tenant, ['i-1'], () => ({ label: 'first' }));
    const runId = runIdOf(flowId, trigger!.eventId, trigger!.recordedAt);
    await eventually('the run to start', async () =>
      (await w.store.readStream(`run-${tenant}-${runId}`)).length ? true : undefined,
    );
    const frames: { id?: string; event: string; data: unknown }[] = [];
    let seenBeforeRelease = -1;
    const done = readSse(`/v1/tenants/${tenant}/runs/${runId}/events`, (f) => {
      frames.push(f);
      // once the transform step is on the stream, let the HTTP step finish
      if (f.event === 'StepSucceeded' && release) {
        seenBeforeRelease = frames.length;
        const r = release;
        release = undefined;
        setTimeout(r, 50);
      }
    });
    const { status, contentType } = await done;
    expect(status).toBe(200);
    expect(contentType).toContain('text/event-stream');
    expect(seenBeforeRelease).toBe(2);
    expect(frames.map((f) => f.event)).toEqual([
      'FlowRunStarted',
      'StepSucceeded',
      'StepSucceeded',
      'StepSucceeded',
      'StepSucceeded',
      'FlowRunCompleted',
      'end',
    ]);
    expect(frames.slice(0, -1).map((f) => f.id)).toEqual(['0', '1', '2', '3', '4', '5']);
    const http = frames[2]!.data as {
      data: {
        summary: {
          request: { url: string; headers: Record<string, string>; body: unknown };
          response: { status: number; body: unknown };
        };
      };
    };
    expect(http.data.summary.request.url).toBe(`${api.url}/items/i-1`);
    // bodies are kept (the flow asks for them), with secret-looking fields blanked; credentials never appear
    expect(http.data.summary.request.body).toEqual({ id: 'i-1', label: 'FIRST', password: '[redacted]' });
    expect(http.data.summary.response).toMatchObject({ status: 200, body: { accepted: true } });
    expect(JSON.stringify(frames)).not.toContain('bearer-secret');

    // resume after a revision with Last-Event-ID
    const resumed: string[] = [];
    await readSse(`/v1/tenants/${tenant}/runs/${runId}/events`, (f) => resumed.push(f.event), { 'last-event-id': '3' });
    expect(resumed).toEqual(['StepSucceeded', 'FlowRunCompleted', 'end']);
  });

  it('dry run: same input, destinations captured (nothing sent, nothing written), no difference; another version shows its differences', async () => {
    const [trigger] = await ingest(w, tenant, ['i-2'], () => ({ label: 'second' }));
    const runId = runIdOf(flowId, trigger!.eventId, trigger!.recordedAt);
    await eventually('the run to complete', async () =>
      (await w.store.readStream(`run-${tenant}-${runId}`)).some((e) => e.type === 'FlowRunCompleted')
        ? true
        : undefined,
    );
    await sink.query('delete from items');
    const callsBefore = api.received.length;
    const res = await app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant}/runs/${runId}/dry-run`,
      headers: { authorization: `Bearer ${key}` },
    });
    expect(res.statusCode).toBe(200);
    const body = res.json() as {
      same: boolean;
      differences: unknown[];
      dryRun: {
        status: string;
        steps: { type: string; effect?: { kind: string; headers?: Record<string, string>; values?: unknown[] } }[];
      };
      original: { status: string };
    };
    expect(body.original.status).toBe('completed');
    expect(body.dryRun.status).toBe('completed');
    expect(body.differences).toEqual([]);
    expect(body.same).toBe(true);
    expect(body.dryRun.steps.map((s) => s.type)).toEqual(['transform', 'http', 'transform', 'postgres']);
    expect(body.dryRun.steps[1]!.effect).toMatchObject({ kind: 'http', headers: { authorization: '[redacted]' } });
    expect(body.dryRun.steps[3]!.effect).toMatchObject({ kind: 'postgres', values: ['i-2', 'SECOND'] });
    expect(api.received.length).toBe(callsBefore);
    expect((await sink.query('select * from items')).rows).toEqual([]);
    expect(res.body).not.toContain('bearer-secret');

    await append(w, `flow-${tenant}-${flowId}`, [
      {
        type: 'FlowVersionPublished',
        tenantId: tenant,
        data: {
          flowId,
          version: 2,
          definition: {
            trigger: { eventType: 'RecordIngested' },
            steps: [
              { type: 'transform', expression: '{ "id": data.externalId, "label": $lowercase(data.payload.label) }' },
              { type: 'http', connectorId: httpId, method: 'PATCH', url: '/items/{{id}}' },
            ],
          },
        },
      },
    ]);
    await eventually('version 2 known to the runner', async () =>
      (await w.pool.query(`select 1 from keel_runner_flow_versions where flow_id = $1 and version = 2`, [flowId]))
        .rowCount
        ? true
        : undefined,
    );
    const v2 = await app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant}/runs/${runId}/dry-run`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: { version: 2 },
    });
    expect(v2.statusCode).toBe(200);
    const d2 = v2.json() as {
      version: number;
      recordedVersion: number;
      same: boolean;
      differences: { stepIndex: number; field: string; original: unknown; dryRun: unknown }[];
    };
    expect(d2).toMatchObject({ version: 2, recordedVersion: 1, same: false });
    const fields = d2.differences.map((d) => `${d.stepIndex}:${d.field}`);
    expect(fields).toContain('0:outputHash');
    expect(fields).toContain('1:request.method');
    expect(fields).toContain('2:outcome');
    expect(d2.differences.find((d) => d.field === 'request.method')).toMatchObject({
      original: 'POST',
      dryRun: 'PATCH',
    });
    expect(api.received.length).toBe(callsBefore);
  });

  it('refuses what it should: no key 401, another tenant 404, unknown run 404, bad ids and bodies 400', async () => {
    const other = await createTenant(w);
    const otherKey = await apiKey(w, other, 'owner');
    const runId = (
      await w.pool.query(`select run_id from keel_runner_flow_runs where tenant_id = $1 limit 1`, [tenant])
    ).rows[0].run_id as string;
    const url = `/v1/tenants/${tenant}/runs/${runId}`;
    const noKey = await app.inject({ method: 'GET', url: `${url}/events` });
    expect(noKey.statusCode).toBe(401);
    expect(noKey.json()).toMatchObject({ error: { code: expect.any(String) } });
    const cross = await app.inject({
      method: 'POST',
      url: `${url}/dry-run`,
      headers: { authorization: `Bearer ${otherKey}` },
    });
    expect(cross.statusCode).toBe(404);
    const unknown = await app.inject({
      method: 'GET',
      url: `/v1/tenants/${tenant}/runs/${uuidv7()}/events`,
      headers: { authorization: `Bearer ${key}` },
    });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    const badId = await app.inject({
      method: 'POST',
      url: `/v1/tenants/${tenant}/runs/not-a-run/dry-run`,
      headers: { authorization: `Bearer ${key}` },
    });
    expect(badId.statusCode).toBe(400);
    expect(badId.json()).toMatchObject({ error: { code: 'VALIDATION_FAILED', details: { field: 'params.runId' } } });
    const badBody = await app.inject({
      method: 'POST',
      url: `${url}/dry-run`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: { version: 'two' },
    });
    expect(badBody.statusCode).toBe(400);
    const extra = await app.inject({
      method: 'POST',
      url: `${url}/dry-run`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: { version: 1, sneaky: true },
    });
    expect(extra.statusCode).toBe(400);
    const noVersion = await app.inject({
      method: 'POST',
      url: `${url}/dry-run`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: { version: 99 },
    });
    expect(noVersion.statusCode).toBe(404);
    const viewer = await apiKey(w, tenant, 'viewer');
    const forbidden = await app.inject({
      method: 'POST',
      url: `${url}/dry-run`,
      headers: { authorization: `Bearer ${viewer}` },
    });
    expect(forbidden.statusCode).toBe(403);
  });

  it('the runner metrics are served at /metrics', async () => {
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.body).toContain('keel_runner_flow_steps_total{step_type="http",outcome="succeeded"}');
    expect(res.body).toContain('keel_runner_flow_runs_total{outcome="completed"}');
  });
});
