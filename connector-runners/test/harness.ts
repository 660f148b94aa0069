/**
 * The runner suites' world: a fresh database with the store, bus, auth and runner tables, the
 * real PostgreSQL event store and bus, a real keyring (secrets are encrypted as the write side
 * encrypts them), and helpers that append the events the write side would append.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import {
  applyAuthEvents,
  authMigrations,
  busMigrations,
  canonicalHash,
  createKafkaBus,
  createKeyring,
  createPostgresBus,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  hashSecret,
  loadBaseConfig,
  masterKeyId,
  newApiKey,
  runMigrations,
  startRelay,
  storeMigrations,
  uuidv7,
  type EventBus,
  type EventStore,
  type KeelRuntime,
  type Keyring,
  type NewEvent,
  type RecordedEvent,
} from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';
import { connectorRunnerMigrations } from '../src/index.ts';
import type { RunnerConfig } from '../src/config.ts';
import { loadRunnerConfig } from '../src/config.ts';
import { secretOpener } from '../src/runtime-deps.ts';

export const testLogger = pino({ level: process.env.KEEL_TEST_LOG ?? 'silent' });

export interface World {
  url: string;
  pool: pg.Pool;
  store: EventStore;
  keyring: Keyring;
  masterKeyHex: string;
  runtime: KeelRuntime;
  close(): Promise<void>;
}

export async function world(prefix = 'runners'): Promise<World> {
  const url = await freshDatabase(prefix);
  await runMigrations(url, [storeMigrations, busMigrations, authMigrations, ...connectorRunnerMigrations]);
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  // The suite's database is dropped (with force) at the end: a connection still closing must not crash the run.
  pool.on('error', () => undefined);
  const registry = createSchemaRegistry();
  const store = getPostgreSQLEventStore({ connectionString: url, registry });
  const master = randomBytes(32);
  const keyring = createKeyring({
    pool,
    masterKey: { key: master, id: masterKeyId(master), source: 'test', generated: true },
  });
  const closers: (() => Promise<void>)[] = [];
  const runtime: KeelRuntime = {
    config: loadBaseConfig({
      KEEL_PROFILE: 'postgres',
      DATABASE_URL: url,
      KEEL_DATA_DIR: `.keel-test/runners-${randomBytes(3).toString('hex')}`,
    }),
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
    keyring,
    masterKeyHex: master.toString('hex'),
    runtime,
    close: async () => {
      for (const c of closers.reverse()) await c().catch(() => undefined);
      await store.close();
      await pool.end();
    },
  };
}

/** How a suite gets its bus: the PostgreSQL log, or Kafka behind a relay. */
export interface BusKind {
  name: 'postgres' | 'kafka';
  /** A bus over the world's store; `close` also stops what feeds it. */
  open(w: World): Promise<{ bus: EventBus; close(): Promise<void> }>;
}

export const postgresBusKind: BusKind = {
  name: 'postgres',
  open: async (w) => {
    const bus = createPostgresBus({
      store: w.store,
      pool: w.pool,
      logger: testLogger,
      pollIntervalMs: 10,
      leaseTtlMs: 2_000,
    });
    return { bus, close: () => bus.close() };
  },
};

/** Kafka: one topic per world, fed by the real relay from the world's store. */
export function kafkaBusKind(brokers: string[]): BusKind {
  const topics = new Map<World, string>();
  return {
    name: 'kafka',
    open: async (w) => {
      let topic = topics.get(w);
      if (!topic) {
        topic = `keel.test.runners.${Date.now().toString(36)}.${randomBytes(3).toString('hex')}`;
        topics.set(w, topic);
      }
      const bus = createKafkaBus({
        brokers,
        topic,
        deadLetterTopic: `${topic}.dlq`,
        logger: testLogger,
        sessionTimeoutMs: 6_000,
      });
      await bus.ensureTopics();
      const relay = startRelay({
        store: w.store,
        pool: w.pool,
        brokers,
        topic,
        logger: testLogger,
        registry: new Registry(),
        pollIntervalMs: 5,
        leaseTtlMs: 3_000,
      });
      await relay.activated;
      return {
        bus,
        close: async () => {
          await bus.close();
          await relay.stop();
        },
      };
    },
  };
}

/** Small delays so retries and breakers play out in a test's time. */
export function testConfig(over: Partial<RunnerConfig> = {}, env: Record<string, string> = {}): RunnerConfig {
  const base = loadRunnerConfig({
    KEEL_RUNNER_BACKOFF_BASE_MS: '50',
    KEEL_RUNNER_BACKOFF_MAX_MS: '400',
    KEEL_RUNNER_WEBHOOK_TIMEOUT_MS: '1000',
    KEEL_RUNNER_STEP_TIMEOUT_MS: '1000',
    KEEL_RUNNER_LEASE_MS: '3000',
    KEEL_RUNNER_POLL_MS: '20',
    KEEL_RUNNER_BREAKER_OPEN_MS: '300',
    KEEL_RUNNER_SHUTDOWN_GRACE_MS: '2000',
    KEEL_RUNNER_PRIVATE_NETWORKS: 'allow', // the test endpoints are on this machine
    ...env,
  });
  return { ...base, ...over };
}

export const openSecretOf = (w: World) => secretOpener(w.keyring);

const actor = { kind: 'user' as const, id: 'test-admin' };

export async function append(w: World, streamId: string, events: Omit<NewEvent, 'actor'>[]): Promise<RecordedEvent[]> {
  const r = await w.store.appendToStream(
    streamId,
    events.map((e) => ({ actor, ...e })),
  );
  return r.events;
}

export async function createTenant(w: World, tenantId = `t${randomBytes(4).toString('hex')}`): Promise<string> {
  const events = await append(w, `tenant-${tenantId}-${tenantId}`, [
    { type: 'TenantCreated', tenantId, data: { name: tenantId } },
  ]);
  await applyAuthEvents(w.pool, events);
  return tenantId;
}

/** An API key of the tenant with a role, usable as `Authorization: Bearer <key>` on the routes. */
export async function apiKey(
  w: World,
  tenantId: string,
  role: 'owner' | 'viewer' | 'operator' = 'owner',
): Promise<string> {
  const issued = newApiKey();
  const events = await append(w, `access-${tenantId}-${tenantId}`, [
    {
      type: 'ApiKeyIssued',
      tenantId,
      data: { keyId: issued.keyId, name: 'test', role, secretHash: await hashSecret(issued.secret) },
    },
  ]);
  await applyAuthEvents(w.pool, events);
  return issued.apiKey;
}

export async function registerWebhook(
  w: World,
  tenantId: string,
  url: string,
  eventTypes: string[] = ['RecordIngested'],
): Promise<{ webhookId: string; secret: string }> {
  const webhookId = uuidv7();
  const secret = `whsec_${randomBytes(16).toString('hex')}`;
  await append(w, `webhook-${tenantId}-${webhookId}`, [
    {
      type: 'WebhookEndpointRegistered',
      tenantId,
      data: { webhookId, url, eventTypes, secret: await w.keyring.encryptField(tenantId, secret) },
    },
  ]);
  return { webhookId, secret };
}

export function recordEvent(
  tenantId: string,
  externalId: string,
  payload: Record<string, unknown> = { n: externalId },
  source = 'crm',
  entityType = 'contact',
): Omit<NewEvent, 'actor'> {
  return {
    type: 'RecordIngested',
    tenantId,
    correlationId: `corr-${externalId}`,
    data: { source, entityType, externalId, payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
  };
}

export async function ingest(
  w: World,
  tenantId: string,
  externalIds: string[],
  payload?: (id: string) => Record<string, unknown>,
  source = 'crm',
  entityType = 'contact',
): Promise<RecordedEvent[]> {
  const r = await w.store.appendBatch(
    externalIds.map((id) => ({
      streamId: `record-${tenantId}-${entityType}-${id}`,
      events: [{ actor, ...recordEvent(tenantId, id, payload ? payload(id) : { n: id }, source, entityType) }],
    })),
  );
  const events: RecordedEvent[] = [];
  for (const s of r.streams) events.push(...(await w.store.readStream(s.streamId)));
  return events;
}

/** Events of the given types, from the whole log. */
export async function eventsOfType(w: World, types: string[], tenantId?: string): Promise<RecordedEvent[]> {
  const out: RecordedEvent[] = [];
  let after = 0;
  for (;;) {
    const r = await w.store.readAll({
      after,
      maxCount: 5000,
      filter: { eventTypes: types, ...(tenantId && { tenantId }) },
    });
    out.push(...r.events);
    after = r.position;
    if (r.isEnd || !r.events.length) break;
  }
  return out;
}

/** Polls until `check` returns a value (not undefined/false); fails with `what` after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
