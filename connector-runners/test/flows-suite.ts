import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { uuidv7, type EventBus } from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';
import { runIdOf, startRunners, type RunnersHandle } from '../src/index.ts';
import {
  type BusKind,
  append,
  eventsOfType,
  eventually,
  ingest,
  openSecretOf,
  createTenant,
  testConfig,
  world,
  type World,
} from './harness.ts';
import { answer, startServer, type TestServer } from './servers.ts';

/**
 * Flow runs end to end on the PostgreSQL bus: a trigger with a filter, a JSONata transform, the
 * HTTP request connector (OAuth2 against a real local token server) and the PostgreSQL sink (a
 * real second database standing for the tenant's own).
 */
export function flowSuite(kind: BusKind): void {
  describe(`flow runs (${kind.name} bus, real servers)`, () => {
    let w: World;
    let opened: { bus: EventBus; close(): Promise<void> } | undefined;
    let runners: RunnersHandle | undefined;
    let sinkUrl: string;
    let sink: pg.Pool;
    let api: TestServer;
    let tokenServer: TestServer;
    let tokensIssued = 0;

    beforeAll(async () => {
      w = await world('flows');
      sinkUrl = await freshDatabase('tenantdb');
      sink = new pg.Pool({ connectionString: sinkUrl, max: 2 });
      sink.on('error', () => undefined);
      await sink.query(`create table contacts (id text primary key, full_name text, source text)`);
      await sink.query(`create table write_log (id text, op text)`);
      await sink.query(
        `create function log_write() returns trigger language plpgsql as $$ begin insert into write_log values (new.id, tg_op); return new; end $$`,
      );
      await sink.query(
        `create trigger contacts_writes after insert or update on contacts for each row execute function log_write()`,
      );
      api = await startServer(answer(201, '{"remoteId":"r-1"}', { 'content-type': 'application/json' }));
      tokenServer = await startServer((_req, res, body) => {
        const form = new URLSearchParams(body);
        tokensIssued++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            access_token: `tok-${tokensIssued}`,
            token_type: 'Bearer',
            expires_in: 3600,
            scope: form.get('scope'),
          }),
        );
      });
    });
    afterEach(async () => {
      await runners?.stop();
      runners = undefined;
      await opened?.close();
      opened = undefined;
    });
    afterAll(async () => {
      await api.close();
      await tokenServer.close();
      await sink.end();
      await w.close();
    });

    async function start(env: Record<string, string> = {}): Promise<RunnersHandle> {
      opened = await kind.open(w);
      const bus = opened.bus;
      runners = await startRunners(w.runtime, bus, {
        config: testConfig({}, env),
        openSecret: openSecretOf(w),
        runners: ['flows'],
      });
      await runners.ready;
      return runners;
    }

    /** Installs an OAuth2 HTTP connector and a PostgreSQL connector, and a flow using both; returns ids. */
    async function setup(tenant: string, definition?: (ids: { http: string; db: string }) => unknown) {
      const http = uuidv7();
      const db = uuidv7();
      const flowId = uuidv7();
      await append(w, `connector-${tenant}-${http}`, [
        {
          type: 'ConnectorInstalled',
          tenantId: tenant,
          data: {
            connectorId: http,
            kind: 'http',
            name: 'crm api',
            config: {
              baseUrl: `${api.url}/v1`,
              auth: { type: 'oauth2', tokenUrl: `${tokenServer.url}/token`, clientId: 'c1', scope: 'contacts' },
            },
            credentials: await w.keyring.encryptField(tenant, JSON.stringify({ clientSecret: 'very-secret' })),
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
            name: 'warehouse',
            config: {},
            credentials: await w.keyring.encryptField(tenant, JSON.stringify({ connectionString: sinkUrl })),
          },
        },
      ]);
      const def = definition?.({ http, db }) ?? {
        trigger: { eventType: 'RecordIngested', source: 'crm', entityType: 'contact' },
        steps: [
          {
            type: 'transform',
            expression: `{ "id": data.externalId, "full_name": data.payload.first & " " & data.payload.last, "source": data.source }`,
          },
          { type: 'http', connectorId: http, method: 'PUT', url: '/contacts/{{id}}' },
          {
            type: 'transform',
            expression: `{ "id": $steps[0].id, "full_name": $steps[0].full_name, "source": $steps[1].remoteId }`,
          },
          { type: 'postgres', connectorId: db, table: 'contacts', key: ['id'] },
        ],
      };
      await append(w, `flow-${tenant}-${flowId}`, [
        { type: 'FlowDefined', tenantId: tenant, data: { flowId, name: 'contacts to crm', definition: def } },
        { type: 'FlowEnabled', tenantId: tenant, data: { flowId } },
      ]);
      return { http, db, flowId };
    }

    const runEvents = async (tenant: string, runId: string) => w.store.readStream(`run-${tenant}-${runId}`);
    const finished = (tenant: string, runId: string) =>
      eventually(`run ${runId} to finish`, async () => {
        const evs = await runEvents(tenant, runId);
        return evs.some((e) => ['FlowRunCompleted', 'FlowRunFailed', 'FlowRunDeadLettered'].includes(e.type))
          ? evs
          : undefined;
      });

    it('runs trigger → transform → HTTP (OAuth2) → transform → PostgreSQL sink, each step an event caused by the trigger', async () => {
      const tenant = await createTenant(w);
      const { flowId } = await setup(tenant);
      await start();
      const before = api.received.length;
      const [trigger] = await ingest(w, tenant, ['p-1'], () => ({ first: 'Ada', last: 'Lovelace' }));
      // a record of another source does not trigger the flow
      await ingest(w, tenant, ['x-1'], () => ({ first: 'No', last: 'Body' }), 'erp');
      const runId = runIdOf(flowId, trigger!.eventId, trigger!.recordedAt);
      const evs = await finished(tenant, runId);
      expect(evs.map((e) => e.type)).toEqual([
        'FlowRunStarted',
        'StepSucceeded',
        'StepSucceeded',
        'StepSucceeded',
        'StepSucceeded',
        'FlowRunCompleted',
      ]);
      for (const e of evs)
        expect(e).toMatchObject({ causationId: trigger!.eventId, correlationId: 'corr-p-1', tenantId: tenant });
      expect(evs[0]!.data).toMatchObject({
        runId,
        flowId,
        flowVersion: 1,
        triggerEventId: trigger!.eventId,
        input: { data: { externalId: 'p-1' } },
      });
      const http = evs[2]!.data as {
        summary: {
          request: { method: string; url: string; headers: Record<string, string> };
          response: { status: number };
        };
      };
      expect(http.summary.request).toMatchObject({ method: 'PUT', url: `${api.url}/v1/contacts/p-1` });
      expect(http.summary.request.headers['idempotency-key']).toBe(`${runId}:1`);
      expect(http.summary.response.status).toBe(201);
      expect(JSON.stringify(evs)).not.toContain('very-secret');
      expect(JSON.stringify(evs)).not.toMatch(/tok-\d/);
      // what the API saw
      expect(api.received.length).toBe(before + 1);
      const call = api.received.at(-1)!;
      expect(call.headers.authorization).toMatch(/^Bearer tok-\d+$/);
      expect(JSON.parse(call.body)).toEqual({ id: 'p-1', full_name: 'Ada Lovelace', source: 'crm' });
      // what the sink holds
      const { rows } = await sink.query(`select id, full_name, source from contacts where id = 'p-1'`);
      expect(rows).toEqual([{ id: 'p-1', full_name: 'Ada Lovelace', source: 'r-1' }]);
      expect((evs[4]!.data as { summary: { applied: boolean; rows: number } }).summary).toMatchObject({
        applied: true,
        rows: 1,
      });
      expect(await eventsOfType(w, ['FlowRunStarted'], tenant)).toHaveLength(1);
    });

    it('retries a failing step with backoff (StepFailed + StepRetryScheduled), then completes; the token is cached across runs', async () => {
      const tenant = await createTenant(w);
      const { flowId } = await setup(tenant);
      await start();
      let calls = 0;
      api.behave((req, res, body, n) => {
        calls++;
        return (
          calls <= 2 ? answer(503, 'later') : answer(200, '{"remoteId":"r-2"}', { 'content-type': 'application/json' })
        )(req, res, body, n);
      });
      const tokensBefore = tokensIssued;
      const [trigger] = await ingest(w, tenant, ['p-2'], () => ({ first: 'Alan', last: 'Turing' }));
      const runId = runIdOf(flowId, trigger!.eventId, trigger!.recordedAt);
      const evs = await finished(tenant, runId);
      expect(evs.map((e) => e.type)).toEqual([
        'FlowRunStarted',
        'StepSucceeded',
        'StepFailed',
        'StepRetryScheduled',
        'StepFailed',
        'StepRetryScheduled',
        'StepSucceeded',
        'StepSucceeded',
        'StepSucceeded',
        'FlowRunCompleted',
      ]);
      expect(evs[2]!.data).toMatchObject({ stepIndex: 1, attempt: 1, error: 'destination answered 503' });
      expect(evs[3]!.data).toMatchObject({ stepIndex: 1, attempt: 1 });
      expect(evs[6]!.data).toMatchObject({ stepIndex: 1, attempt: 3 });
      // every attempt of the step carried the same idempotency key
      const keys = new Set(api.received.slice(-3).map((r) => r.headers['idempotency-key']));
      expect(keys).toEqual(new Set([`${runId}:1`]));
      expect(tokensIssued - tokensBefore).toBeLessThanOrEqual(1);
      api.behave(answer(201, '{"remoteId":"r-1"}', { 'content-type': 'application/json' }));
    });

    it('a 4xx fails the run; exhausted retries dead-letter it', async () => {
      const tenant = await createTenant(w);
      const { flowId } = await setup(tenant);
      await start({ KEEL_RUNNER_FLOW_MAX_ATTEMPTS: '2' });
      api.behave(answer(422, '{"error":"invalid"}', { 'content-type': 'application/json' }));
      const [t1] = await ingest(w, tenant, ['p-3'], () => ({ first: 'A', last: 'B' }));
      const failed = await finished(tenant, runIdOf(flowId, t1!.eventId, t1!.recordedAt));
      expect(failed.map((e) => e.type)).toEqual(['FlowRunStarted', 'StepSucceeded', 'StepFailed', 'FlowRunFailed']);
      expect(failed.at(-1)!.data).toMatchObject({ error: 'destination answered 422' });
      api.behave(answer(500, 'down'));
      const [t2] = await ingest(w, tenant, ['p-4'], () => ({ first: 'C', last: 'D' }));
      const dead = await finished(tenant, runIdOf(flowId, t2!.eventId, t2!.recordedAt));
      expect(dead.map((e) => e.type)).toEqual([
        'FlowRunStarted',
        'StepSucceeded',
        'StepFailed',
        'StepRetryScheduled',
        'StepFailed',
        'FlowRunDeadLettered',
      ]);
      expect((dead.at(-1)!.data as { reason: string }).reason).toMatch(
        /gave up after 2 attempts; last: destination answered 500/,
      );
      api.behave(answer(201, '{"remoteId":"r-1"}', { 'content-type': 'application/json' }));
      const { rows } = await sink.query(`select id from contacts where id in ('p-3', 'p-4')`);
      expect(rows).toEqual([]);
    });

    it('a trigger condition filters, an invalid definition fails visibly, a disabled flow does not run, a new version is used once published', async () => {
      const tenant = await createTenant(w);
      const { flowId, db } = await setup(tenant, ({ db }) => ({
        trigger: { eventType: 'RecordIngested', condition: 'data.payload.vip = true' },
        steps: [
          { type: 'transform', expression: '{ "id": data.externalId, "full_name": "vip" }' },
          { type: 'postgres', connectorId: db, table: 'contacts', key: ['id'] },
        ],
      }));
      await start();
      const [plain, vip] = await ingest(w, tenant, ['v-1', 'v-2'], (id) => ({ vip: id === 'v-2' }));
      const evs = await finished(tenant, runIdOf(flowId, vip!.eventId, vip!.recordedAt));
      expect(evs.at(-1)!.type).toBe('FlowRunCompleted');
      expect(await runEvents(tenant, runIdOf(flowId, plain!.eventId, plain!.recordedAt))).toEqual([]);

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
                { type: 'transform', expression: '{ "id": data.externalId, "full_name": "v2" }' },
                { type: 'postgres', connectorId: db, table: 'contacts', key: ['id'] },
              ],
            },
          },
        },
      ]);
      const [v2] = await ingest(w, tenant, ['v-3']);
      const run2 = await finished(tenant, runIdOf(flowId, v2!.eventId, v2!.recordedAt));
      expect(run2[0]!.data).toMatchObject({ flowVersion: 2 });
      expect((await sink.query(`select full_name from contacts where id = 'v-3'`)).rows).toEqual([{ full_name: 'v2' }]);

      await append(w, `flow-${tenant}-${flowId}`, [
        {
          type: 'FlowVersionPublished',
          tenantId: tenant,
          data: {
            flowId,
            version: 3,
            definition: { trigger: { eventType: 'RecordIngested' }, steps: [{ type: 'teleport' }] },
          },
        },
      ]);
      const [bad] = await ingest(w, tenant, ['v-4']);
      const run3 = await finished(tenant, runIdOf(flowId, bad!.eventId, bad!.recordedAt));
      expect(run3.map((e) => e.type)).toEqual(['FlowRunStarted', 'FlowRunFailed']);
      expect((run3[1]!.data as { error: string }).error).toMatch(/definition\.steps\.0\.type/);

      await append(w, `flow-${tenant}-${flowId}`, [{ type: 'FlowDisabled', tenantId: tenant, data: { flowId } }]);
      const [off] = await ingest(w, tenant, ['v-5']);
      await new Promise((r) => setTimeout(r, 400));
      expect(await runEvents(tenant, runIdOf(flowId, off!.eventId, off!.recordedAt))).toEqual([]);
    });

    it('a paused connector holds the run (no attempt spent) until it is resumed', async () => {
      const tenant = await createTenant(w);
      const { flowId, http } = await setup(tenant);
      await append(w, `connector-${tenant}-${http}`, [
        { type: 'ConnectorPaused', tenantId: tenant, data: { connectorId: http } },
      ]);
      await start();
      const [t] = await ingest(w, tenant, ['z-1'], () => ({ first: 'Z', last: 'Z' }));
      const runId = runIdOf(flowId, t!.eventId, t!.recordedAt);
      await eventually('the run to start', async () => ((await runEvents(tenant, runId)).length ? true : undefined));
      await new Promise((r) => setTimeout(r, 300));
      expect((await runEvents(tenant, runId)).map((e) => e.type)).toEqual(['FlowRunStarted', 'StepSucceeded']);
      const row = await w.pool.query(`select state, step_index, attempt from keel_runner_flow_runs where run_id = $1`, [
        runId,
      ]);
      expect(row.rows[0]).toEqual({ state: 'pending', step_index: 1, attempt: 0 });
      const held = await w.pool.query(
        `select due_at > now() + interval '5 seconds' as later from keel_runner_flow_runs where run_id = $1`,
        [runId],
      );
      expect(held.rows[0].later).toBe(true);
      await append(w, `connector-${tenant}-${http}`, [
        { type: 'ConnectorResumed', tenantId: tenant, data: { connectorId: http } },
      ]);
      // resuming wakes the held run (its deferral would otherwise run out only after 10 s)
      const evs = await finished(tenant, runId);
      expect(evs.at(-1)!.type).toBe('FlowRunCompleted');
    });
  });
}
