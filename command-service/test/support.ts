import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBaseConfig, masterKeyId, type AuthConfig, type RecordedEvent } from '@keel/shared-events';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { freshDatabase } from '../../test/support.ts';
import { buildApp } from '../src/index.ts';
import { loadCommandServiceConfig, type CommandServiceConfig } from '../src/config.ts';
import type { CommandService } from '../src/http/service.ts';
import { createServiceRuntime, type ServiceRuntime } from '../src/runtime.ts';

export interface TestService {
  app: FastifyInstance;
  runtime: ServiceRuntime;
  svc: CommandService;
  url: string;
  adminKey: string;
  masterKey: Buffer;
  /** POST/GET/... with JSON, as the platform admin unless `key` is given. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>, key?: string): Promise<LightMyRequestResponse>;
  createTenant(name?: string): Promise<{ tenantId: string; apiKey: string; keyId: string }>;
  issueKey(tenantId: string, role: string, ownerKey: string): Promise<{ keyId: string; apiKey: string }>;
  /** Every event of the log after `after` (the whole log by default), once all committed ones are visible. */
  events(after?: number): Promise<RecordedEvent[]>;
  head(): Promise<number>;
  /** A second app on the same database and keys: a restart. */
  restart(): Promise<FastifyInstance>;
  close(): Promise<void>;
}

export interface TestServiceOptions {
  config?: (c: CommandServiceConfig) => CommandServiceConfig;
  auth?: Partial<AuthConfig>;
  /** Reuse a database (and keys) of an earlier service. */
  reuse?: { url: string; adminKey: string; masterKey: Buffer };
}

export async function startTestService(options: TestServiceOptions = {}): Promise<TestService> {
  const url = options.reuse?.url ?? (await freshDatabase('cmd'));
  const dataDir = mkdtempSync(join(tmpdir(), 'keel-cmd-'));
  const base = loadBaseConfig({ KEEL_PROFILE: 'postgres', DATABASE_URL: url, KEEL_DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const adminKey = options.reuse?.adminKey ?? `test-admin-${randomBytes(16).toString('hex')}`;
  const masterKeyBytes = options.reuse?.masterKey ?? randomBytes(32);
  const masterKey = { key: masterKeyBytes, id: masterKeyId(masterKeyBytes), source: 'test', generated: false };
  const config = (options.config ?? ((c) => c))(loadCommandServiceConfig({}));
  const auth: AuthConfig = { cacheTtlMs: 1000, ...options.auth };
  const apps: FastifyInstance[] = [];
  const runtimes: ServiceRuntime[] = [];

  async function make(): Promise<{ app: FastifyInstance; runtime: ServiceRuntime; svc: CommandService }> {
    const runtime = await createServiceRuntime({ config: base, databaseUrl: url, logger });
    let svc!: CommandService;
    const app = await buildApp({
      runtime,
      adminKey,
      masterKey,
      config,
      auth,
      base: { logger, defaultMetrics: false },
      onReady: (s) => (svc = s),
    });
    await app.ready();
    apps.push(app);
    runtimes.push(runtime);
    return { app, runtime, svc };
  }

  const first = await make();
  const { app, runtime } = first;

  const call: TestService['call'] = (method, path, body, headers = {}, key = adminKey) =>
    app.inject({
      method: method as 'POST',
      url: path,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      payload: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });

  /**
   * The store reads its global log gap-safely: an event is visible to readAll once every older
   * transaction in the cluster has ended, which on a busy shared server takes a moment. Wait
   * until the reader sees everything committed, then answer the head position.
   */
  async function settle(): Promise<number> {
    const r = await runtime.pool.query<{ max: string | null }>('select max(global_position) as max from keel_events');
    const committed = Number(r.rows[0]?.max ?? 0);
    for (let i = 0; ; i++) {
      const visible = await runtime.store.headPosition();
      if (visible >= committed) return visible;
      if (i > 500) throw new Error(`the store's head stays at ${visible}, below the committed ${committed}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  }

  const t: TestService = {
    app,
    runtime,
    svc: first.svc,
    url,
    adminKey,
    masterKey: masterKeyBytes,
    call,
    async createTenant(name = 'Acme') {
      const r = await call('POST', '/v1/tenants', { name });
      if (r.statusCode !== 201) throw new Error(`create tenant: ${r.statusCode} ${r.body}`);
      return r.json();
    },
    async issueKey(tenantId, role, ownerKey) {
      const r = await call('POST', `/v1/tenants/${tenantId}/api-keys`, { name: `${role} key`, role }, {}, ownerKey);
      if (r.statusCode !== 201) throw new Error(`issue key: ${r.statusCode} ${r.body}`);
      return r.json();
    },
    async events(after = 0) {
      await settle();
      const out: RecordedEvent[] = [];
      let pos = after;
      for (;;) {
        const r = await runtime.store.readAll({ after: pos, maxCount: 5000 });
        out.push(...r.events);
        if (r.events.length === 0 || r.isEnd) {
          if (r.position === pos || r.isEnd) break;
        }
        pos = r.position;
      }
      return out;
    },
    head: settle,
    async restart() {
      return (await make()).app;
    },
    async close() {
      for (const a of apps) await a.close();
      for (const r of runtimes) await r.close();
    },
  };
  return t;
}

/** Reads the whole error body and checks its stable shape. */
export function errorOf(r: LightMyRequestResponse | { body: string }): { code: string; message: string; details?: unknown } {
  const body = JSON.parse(r.body) as { error?: { code: string; message: string; details?: unknown } };
  if (!body.error || typeof body.error.code !== 'string' || typeof body.error.message !== 'string')
    throw new Error(`not an error body: ${r.body}`);
  return body.error;
}
