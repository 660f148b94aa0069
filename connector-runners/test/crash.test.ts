import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { uuidv7, type EventBus } from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';
import { deliveryIdOf, runIdOf, startRunners, type RunnersHandle } from '../src/index.ts';
import {
  append,
  createTenant,
  eventsOfType,
  eventually,
  ingest,
  openSecretOf,
  postgresBusKind,
  registerWebhook,
  testConfig,
  world,
  type World,
} from './harness.ts';
import { answer, startServer, type TestServer } from './servers.ts';

const here = dirname(fileURLToPath(import.meta.url));
const MAIN = resolve(here, '../src/main.ts');

/**
 * A runner process killed (SIGKILL, no cleanup) right after a side effect and before recording
 * it: the work is taken over once its lease ends, with the same idempotency key, and the
 * PostgreSQL sink is not written twice.
 */
describe('crash recovery (a real runner process killed mid-work)', () => {
  let w: World;
  let opened: { bus: EventBus; close(): Promise<void> } | undefined;
  let runners: RunnersHandle | undefined;
  const servers: TestServer[] = [];

  beforeAll(async () => {
    w = await world('crash');
  });
  afterEach(async () => {
    await runners?.stop();
    runners = undefined;
    await opened?.close();
    opened = undefined;
    for (const s of servers.splice(0)) await s.close();
  });
  afterAll(async () => {
    await w.close();
  });

  /** Runs connector-runners/src/main.ts until it kills itself at `failpoint`; resolves with how it ended. */
  function runUntilCrash(
    failpoint: string,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: {
        ...process.env,
        KEEL_PROFILE: 'postgres',
        DATABASE_URL: w.url,
        PORT: '0',
        LOG_LEVEL: 'warn',
        KEEL_DATA_DIR: mkdtempSync(join(tmpdir(), 'keel-crash-')),
        KEEL_MASTER_KEY: w.masterKeyHex,
        KEEL_FAILPOINTS: failpoint,
        KEEL_RUNNER_LEASE_MS: '2000',
        KEEL_RUNNER_WEBHOOK_TIMEOUT_MS: '1000',
        KEEL_RUNNER_STEP_TIMEOUT_MS: '1000',
        KEEL_RUNNER_POLL_MS: '20',
        KEEL_RUNNER_PRIVATE_NETWORKS: 'allow', // the test endpoints are on this machine
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    return new Promise((res) =>
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        res({ code, signal, stderr });
      }),
    );
  }

  async function startInProcess(): Promise<void> {
    opened = await postgresBusKind.open(w);
    runners = await startRunners(w.runtime, opened.bus, { config: testConfig(), openSecret: openSecretOf(w) });
    await runners.ready;
  }

  it('a webhook delivered but not recorded is delivered again with the same Idempotency-Key, and recorded once', async () => {
    const tenant = await createTenant(w);
    const endpoint = await startServer(answer(200));
    servers.push(endpoint);
    const { webhookId } = await registerWebhook(w, tenant, endpoint.url);
    const [event] = await ingest(w, tenant, ['k-1']);
    const crashed = await runUntilCrash('webhook-after-send');
    expect(crashed.signal).toBe('SIGKILL');
    expect(endpoint.received).toHaveLength(1);
    expect(await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant)).toHaveLength(0);

    await startInProcess();
    await endpoint.waitFor(2);
    const key = deliveryIdOf(webhookId, event!.eventId, event!.recordedAt);
    expect(endpoint.received.map((r) => r.headers['idempotency-key'])).toEqual([key, key]);
    const ok = await eventually('the success event', async () => {
      const s = await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant);
      return s.length ? s : undefined;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant)).toHaveLength(1);
    expect(ok[0]!.data).toMatchObject({ deliveryId: key, attempt: 1 });
  }, 90_000);

  it('a PostgreSQL sink step written but not recorded is not written again', async () => {
    const tenant = await createTenant(w);
    const sinkUrl = await freshDatabase('crashsink');
    const sink = new pg.Pool({ connectionString: sinkUrl, max: 2 });
    sink.on('error', () => undefined);
    try {
      await sink.query(`create table contacts (id text primary key, name text)`);
      await sink.query(`create table write_log (id text, op text)`);
      await sink.query(
        `create function log_write() returns trigger language plpgsql as $$ begin insert into write_log values (new.id, tg_op); return new; end $$`,
      );
      await sink.query(
        `create trigger contacts_writes after insert or update on contacts for each row execute function log_write()`,
      );
      const db = uuidv7();
      const flowId = uuidv7();
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
            name: 'sink',
            definition: {
              trigger: { eventType: 'RecordIngested' },
              steps: [
                { type: 'transform', expression: '{ "id": data.externalId, "name": data.payload.name }' },
                { type: 'postgres', connectorId: db, table: 'contacts', key: ['id'] },
              ],
            },
          },
        },
        { type: 'FlowEnabled', tenantId: tenant, data: { flowId } },
      ]);
      const [trigger] = await ingest(w, tenant, ['k-2'], () => ({ name: 'Grace' }));
      const runId = runIdOf(flowId, trigger!.eventId, trigger!.recordedAt);
      const crashed = await runUntilCrash('step-after-side-effect');
      expect(crashed.signal).toBe('SIGKILL');
      expect((await sink.query('select id, op from write_log')).rows).toEqual([{ id: 'k-2', op: 'INSERT' }]);
      const before = (await w.store.readStream(`run-${tenant}-${runId}`)).map((e) => e.type);
      expect(before).toEqual(['FlowRunStarted', 'StepSucceeded']);

      await startInProcess();
      const evs = await eventually('the run to complete', async () => {
        const e = await w.store.readStream(`run-${tenant}-${runId}`);
        return e.some((x) => x.type === 'FlowRunCompleted') ? e : undefined;
      });
      expect(evs.map((e) => e.type)).toEqual(['FlowRunStarted', 'StepSucceeded', 'StepSucceeded', 'FlowRunCompleted']);
      // the re-run step found its marker: reported as already applied, and the table saw one write
      expect((evs[2]!.data as { summary: { applied: boolean } }).summary.applied).toBe(false);
      expect((await sink.query('select id, op from write_log')).rows).toEqual([{ id: 'k-2', op: 'INSERT' }]);
      expect((await sink.query('select id, name from contacts')).rows).toEqual([{ id: 'k-2', name: 'Grace' }]);
    } finally {
      await sink.end();
    }
  }, 90_000);
});
