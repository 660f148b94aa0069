/**
 * Integration plumbing of the projection-service suites: a fresh database with every table the
 * read side needs, a real PostgreSQL event store, a runtime, tenants with API keys of each role,
 * and helpers to append realistic events and wait for the projectors.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import {
  applyAuthEventsInTransaction,
  authMigrations,
  busMigrations,
  canonicalHash,
  createBaseApp,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  hashSecret,
  newApiKey,
  runMigrations,
  storeMigrations,
  streamName,
  uuidv7,
} from '@keel/shared-events';
import type { BaseConfig, EventStore, KeelRuntime, NewEvent, Role } from '@keel/shared-events';
import { createAuditKeyring, createAuditSigner } from '../src/audit/signing.ts';
import type { ProjectionConfig } from '../src/config.ts';
import { projectionServiceMigrations, projectorGroup } from '../src/db/schema.ts';
import type { ProjectionName } from '../src/db/schema.ts';
import { mountProjectionService } from '../src/index.ts';
import { freshDatabase } from '../../test/support.ts';

export const testLogger = pino({ level: process.env.KEEL_TEST_LOG ?? 'silent' });
export const ADMIN_KEY = 'keel_test_admin_key_0123456789abcdef';

export interface TestEnv {
  url: string;
  pool: pg.Pool;
  store: EventStore;
  runtime: KeelRuntime;
  config: ProjectionConfig;
  close(): Promise<void>;
}

export function testProjectionConfig(overrides: Partial<ProjectionConfig> = {}): ProjectionConfig {
  const signer = createAuditSigner(generateKeyPairSync('ed25519').privateKey);
  return {
    signer,
    keyring: createAuditKeyring([signer.publicKey]),
    checkpointEvery: 5,
    checkpointMinutes: 5,
    minPositionWaitMs: 2000,
    rebuildIndexMemoryMB: 256,
    readyMaxLag: 100_000,
    signingKeySource: 'test',
    ...overrides,
  };
}

export async function testEnv(prefix = 'proj', overrides: Partial<ProjectionConfig> = {}): Promise<TestEnv> {
  const url = await freshDatabase(prefix);
  await runMigrations(url, [storeMigrations, busMigrations, authMigrations, ...projectionServiceMigrations]);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // pool.end() resolves before its sockets are closed; the forced drop of the test database at the
  // end of the file may still reach one of them (57P01), which without a listener is an unhandled error.
  pool.on('error', () => undefined);
  const registry = createSchemaRegistry();
  const store = getPostgreSQLEventStore({ connectionString: url, registry, logger: testLogger });
  const closers: (() => Promise<void>)[] = [];
  const config: BaseConfig = {
    profile: 'postgres',
    port: 0,
    host: '127.0.0.1',
    dataDir: mkdtempSync(join(tmpdir(), 'keel-proj-')),
    databaseUrl: url,
    embeddedPgPort: 0,
    kafkaBrokers: [],
    logLevel: 'silent',
  };
  const runtime: KeelRuntime = {
    config,
    databaseUrl: url,
    pool,
    store,
    registry,
    logger: testLogger,
    onClose: (fn) => void closers.push(fn),
  };
  return {
    url,
    pool,
    store,
    runtime,
    config: testProjectionConfig(overrides),
    close: async () => {
      for (const fn of closers.reverse()) await fn().catch(() => undefined);
      await store.close();
      await pool.end();
    },
  };
}

export async function testApp(env: TestEnv): Promise<FastifyInstance> {
  process.env.KEEL_ADMIN_KEY = ADMIN_KEY;
  const app = await createBaseApp({ logLevel: 'silent', defaultMetrics: false });
  await mountProjectionService(app, env.runtime, { config: env.config });
  await app.ready();
  return app;
}

export interface TestTenant {
  tenantId: string;
  keys: Record<Role, string>;
}

/** A tenant with one API key per role, in the store and in the auth tables. */
export async function createTenant(env: TestEnv, name: string): Promise<TestTenant> {
  const tenantId = uuidv7();
  const actor = { kind: 'system' as const, id: 'test' };
  const created = await env.store.appendToStream(streamName('tenant', tenantId, 'main'), [
    { type: 'TenantCreated', tenantId, actor, data: { name } },
  ]);
  const keys = {} as Record<Role, string>;
  const issued: NewEvent[] = [];
  for (const role of ['owner', 'admin', 'operator', 'auditor', 'viewer'] as Role[]) {
    const k = newApiKey();
    keys[role] = k.apiKey;
    issued.push({
      type: 'ApiKeyIssued',
      tenantId,
      actor,
      data: { keyId: k.keyId, name: role, role, secretHash: await hashSecret(k.secret) },
    });
  }
  const access = await env.store.appendToStream(streamName('access', tenantId, 'main'), issued);
  await applyAuthEventsInTransaction(env.pool, [...created.events, ...access.events]);
  return { tenantId, keys };
}

export const auth = (key: string) => ({ authorization: `Bearer ${key}` });

const actor = { kind: 'apiKey' as const, id: 'k-test' };

export function record(
  tenantId: string,
  entityType: string,
  externalId: string,
  payload: Record<string, unknown>,
  correlationId?: string,
): NewEvent {
  return {
    type: 'RecordIngested',
    tenantId,
    actor,
    ...(correlationId ? { correlationId } : {}),
    data: { source: 'test', entityType, externalId, payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
  };
}

/** Appends `n` records for a tenant in one batch (one stream per record); returns the last global position. */
export async function ingest(env: TestEnv, tenantId: string, n: number, from = 0): Promise<number> {
  const r = await env.store.appendBatch(
    Array.from({ length: n }, (_, i) => ({
      streamId: streamName('record', tenantId, `customer-${from + i}`),
      events: [
        record(
          tenantId,
          'customer',
          String(from + i),
          { name: `c${from + i}`, email: `enc:${from + i}`, n: from + i },
          `corr-${Math.floor((from + i) / 10)}`,
        ),
      ],
    })),
  );
  return r.globalPosition;
}

/** A flow with a connector, runs that succeed and fail, a webhook with deliveries: everything the dashboard shows. */
export async function integrationActivity(env: TestEnv, tenantId: string): Promise<number> {
  const a = (type: string, data: Record<string, unknown>, extra: Partial<NewEvent> = {}): NewEvent => ({
    type,
    tenantId,
    actor,
    data,
    ...extra,
  });
  const s = env.store;
  await s.appendToStream(streamName('connector', tenantId, 'c1'), [
    a('ConnectorInstalled', {
      connectorId: 'c1',
      kind: 'http',
      name: 'CRM',
      config: { url: 'https://crm.example' },
      credentials: 'enc:secret',
    }),
  ]);
  const definition = {
    trigger: { eventType: 'RecordIngested' },
    steps: [{ transform: { name: '$.name' } }, { destination: { connectorId: 'c1' } }],
  };
  await s.appendToStream(streamName('flow', tenantId, 'f1'), [
    a('FlowDefined', { flowId: 'f1', name: 'sync', definition }),
    a('FlowVersionPublished', { flowId: 'f1', version: 1, definition }),
    a('FlowEnabled', { flowId: 'f1' }),
  ]);
  const wh = await s.appendToStream(streamName('webhook', tenantId, 'w1'), [
    a('WebhookEndpointRegistered', {
      webhookId: 'w1',
      url: 'https://hooks.example/in',
      eventTypes: ['RecordIngested'],
      secret: 'enc:whsec',
    }),
  ]);
  void wh;
  const recs = await s.appendBatch(
    [0, 1, 2].map((i) => ({
      streamId: streamName('record', tenantId, `order-${i}`),
      events: [record(tenantId, 'order', String(i), { total: i * 10 })],
    })),
  );
  void recs;
  const ids = (await s.readStream(streamName('record', tenantId, 'order-0')))[0]!.eventId;
  const ids1 = (await s.readStream(streamName('record', tenantId, 'order-1')))[0]!.eventId;
  await s.appendToStream(streamName('webhook', tenantId, 'w1'), [
    a('WebhookDeliverySucceeded', {
      webhookId: 'w1',
      deliveryId: 'd0',
      eventId: ids,
      attempt: 1,
      status: 200,
      latencyMs: 15,
    }),
    a('WebhookDeliveryFailed', {
      webhookId: 'w1',
      deliveryId: 'd1',
      eventId: ids1,
      attempt: 1,
      status: 503,
      error: 'HTTP 503',
      nextAttemptAt: '2030-01-01T00:00:00.000Z',
    }),
  ]);
  const run = (runId: string, ok: boolean) => [
    a('FlowRunStarted', { runId, flowId: 'f1', flowVersion: 1, triggerEventId: ids, input: { name: 'x' } }),
    a('StepSucceeded', { runId, stepIndex: 0, attempt: 1, summary: { transformed: true } }),
    ...(ok
      ? [
          a('StepSucceeded', { runId, stepIndex: 1, attempt: 1, summary: { status: 200 } }),
          a('FlowRunCompleted', { runId, durationMs: 120 }),
        ]
      : [
          a('StepFailed', { runId, stepIndex: 1, attempt: 1, error: 'HTTP 500 from CRM' }),
          a('StepRetryScheduled', { runId, stepIndex: 1, attempt: 1, retryAt: '2030-01-01T00:00:00.000Z' }),
          a('StepFailed', { runId, stepIndex: 1, attempt: 2, error: 'HTTP 502 from CRM' }),
          a('FlowRunFailed', { runId, error: 'gave up' }),
        ]),
  ];
  await s.appendToStream(streamName('run', tenantId, 'r1'), run('r1', true));
  const last = await s.appendToStream(streamName('run', tenantId, 'r2'), run('r2', false));
  return last.globalPosition;
}

/** Waits until the projection has applied everything up to `position` (the store's head by default). */
export async function waitForProjection(
  env: TestEnv,
  projection: ProjectionName,
  position?: number,
  timeoutMs = 30_000,
): Promise<void> {
  // Not store.headPosition(): that is the gap-safe head, which lags while any transaction in the
  // cluster (other suites' databases included) is open. The last appended position is the target.
  const target =
    position ??
    Number((await env.pool.query('select coalesce(max(global_position), 0) as p from keel_events')).rows[0].p);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await env.pool.query(
      `select greatest((select max(position) from keel_projector_positions where projector = $1),
                       (select position from keel_bus_checkpoints where name = 'group:' || $1)) as p`,
      [projectorGroup[projection]],
    );
    // On Kafka each tenant's events travel their own partition: the newest position reached by one
    // tenant says nothing of the others. The audit projector takes every event, so there each
    // tenant's own position must reach that tenant's last event up to the target.
    const lagging =
      projection === 'audit' && position === undefined
        ? (
            await env.pool.query(
              `select count(*)::int as n
                 from (select tenant_id, max(global_position) as last from keel_events where global_position <= $2 group by tenant_id) e
                 left join keel_projector_positions p on p.projector = $1 and p.tenant_id = e.tenant_id
                where coalesce(p.position, 0) < e.last
                  and coalesce((select position from keel_bus_checkpoints where name = 'group:' || $1), 0) < $2`,
              [projectorGroup[projection], target],
            )
          ).rows[0].n
        : 0;
    if (Number(r.rows[0]?.p ?? 0) >= target && lagging === 0) return;
    if (Date.now() > deadline) throw new Error(`${projection} did not reach ${target} (at ${r.rows[0]?.p})`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

/** Every row of a table in a stable order, for comparing models. */
export async function dumpTable(pool: pg.Pool, table: string, orderBy: string): Promise<unknown[]> {
  const r = await pool.query(`select * from ${table} order by ${orderBy}`);
  return r.rows.map((row: Record<string, unknown>) =>
    Object.fromEntries(
      Object.entries(row).map(([k, v]) => [
        k,
        Buffer.isBuffer(v) ? v.toString('hex') : v instanceof Date ? v.toISOString() : v,
      ]),
    ),
  );
}

export const modelTables: Record<ProjectionName, [string, string][]> = {
  audit: [
    ['audit_events', 'tenant_id, global_position'],
    ['audit_chain_heads', 'tenant_id'],
  ],
  dashboard: [
    ['dash_flow_runs', 'tenant_id, run_id'],
    ['dash_connectors', 'tenant_id, connector_id'],
    ['dash_flow_versions', 'tenant_id, flow_id, version'],
    ['dash_webhook_endpoints', 'tenant_id, webhook_id'],
    ['dash_webhook_deliveries', 'tenant_id, webhook_id, event_id'],
    ['dash_ingest_rates', 'tenant_id, hour, event_type'],
    ['dash_positions', 'tenant_id'],
  ],
};
