/**
 * Shared plumbing of the bus and relay suites: a fresh database with the store and bus tables,
 * test events with a per-tenant sequence number, a projection that records every application
 * (so a double application or a reordering is visible), and child-process fixtures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import {
  busMigrations,
  canonicalHash,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  runMigrations,
  storeMigrations,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
} from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';

const here = dirname(fileURLToPath(import.meta.url));

/** Silent unless KEEL_TEST_LOG=debug|info|warn. */
export const testLogger = pino({ level: process.env.KEEL_TEST_LOG ?? 'silent' });

export interface BusDatabase {
  url: string;
  pool: pg.Pool;
  store: EventStore;
  close(): Promise<void>;
}

export async function busDatabase(prefix = 'bus'): Promise<BusDatabase> {
  const url = await freshDatabase(prefix);
  await runMigrations(url, [storeMigrations, busMigrations]);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // The suite's database is dropped (with force) at the end; idle connections may see that.
  pool.on('error', () => undefined);
  await pool.query(`create table bus_test_applied (
    id bigserial primary key, projector text not null, tenant_id text not null, seq integer not null,
    event_id text not null, global_position bigint not null)`);
  const store = getPostgreSQLEventStore({ connectionString: url, registry: createSchemaRegistry() });
  return {
    url,
    pool,
    store,
    close: async () => {
      await store.close().catch(() => undefined);
      await pool.end();
    },
  };
}

export const tenants = (n: number, prefix = 't'): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

export function ingested(tenantId: string, seq: number): NewEvent {
  const payload = { seq };
  return {
    type: 'RecordIngested',
    tenantId,
    actor: { kind: 'system', id: 'bus-test' },
    correlationId: `corr-${tenantId}-${seq}`,
    traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
    data: {
      source: 'bus-test',
      entityType: 'seq',
      externalId: String(seq),
      payload,
      receivedVia: 'api',
      contentHash: canonicalHash(payload),
    },
  };
}

/** Appends events seq+1..seq+perTenant for every tenant, interleaved, in one batch; returns the count. */
export async function appendRound(
  store: EventStore,
  ts: string[],
  fromSeq: number,
  perTenant: number,
): Promise<number> {
  await appendRoundAt(store, ts, fromSeq, perTenant);
  return ts.length * perTenant;
}

/**
 * Like appendRound; returns the global position of the round's last event. (Not headPosition():
 * that one is gap-safe and can trail behind while any transaction on the server is open.)
 */
export async function appendRoundAt(
  store: EventStore,
  ts: string[],
  fromSeq: number,
  perTenant: number,
): Promise<number> {
  const r = await store.appendBatch(
    ts.map((t) => ({
      streamId: `record-${t}-seq-all`,
      events: Array.from({ length: perTenant }, (_, i) => ingested(t, fromSeq + i + 1)),
    })),
  );
  return r.globalPosition;
}

import { seqOf } from './fixtures/projection.ts';
export { applyTestProjection, seqOf } from './fixtures/projection.ts';

export interface AppliedReport {
  total: number;
  /** Events applied more than once. */
  doubled: number;
  /** Per tenant, seqs that were applied out of order (not previous + 1). */
  outOfOrder: string[];
  perTenant: Map<string, number>;
}

/** What `projector` applied for the tenants whose id starts with `tenantPrefix`. */
export async function appliedReport(pool: pg.Pool, projector: string, tenantPrefix = ''): Promise<AppliedReport> {
  const r = await pool.query<{ tenant_id: string; seq: number; event_id: string }>(
    'select tenant_id, seq, event_id from bus_test_applied where projector = $1 and starts_with(tenant_id, $2) order by id',
    [projector, tenantPrefix],
  );
  const seen = new Set<string>();
  const last = new Map<string, number>();
  const report: AppliedReport = { total: r.rows.length, doubled: 0, outOfOrder: [], perTenant: new Map() };
  for (const row of r.rows) {
    if (seen.has(row.event_id)) report.doubled++;
    seen.add(row.event_id);
    const prev = last.get(row.tenant_id) ?? 0;
    if (row.seq !== prev + 1) report.outOfOrder.push(`${row.tenant_id}: ${prev} then ${row.seq}`);
    last.set(row.tenant_id, row.seq);
    report.perTenant.set(row.tenant_id, (report.perTenant.get(row.tenant_id) ?? 0) + 1);
  }
  return report;
}

/**
 * Watches deliveries (not applications): per tenant, the first delivery of each seq must come in
 * order without a gap; a seq at or below what was seen is a redelivery (allowed, counted).
 */
export function deliveryTracker(tenantPrefix = '') {
  const maxSeen = new Map<string, number>();
  const t = {
    /** Deliveries of the watched tenants. */
    delivered: 0,
    redelivered: 0,
    gaps: [] as string[],
    see(events: RecordedEvent[]) {
      for (const e of events) {
        if (!e.tenantId.startsWith(tenantPrefix)) continue;
        t.delivered++;
        const seq = seqOf(e);
        const max = maxSeen.get(e.tenantId) ?? 0;
        if (seq <= max) t.redelivered++;
        else if (seq === max + 1) maxSeen.set(e.tenantId, seq);
        else {
          t.gaps.push(`${e.tenantId}: ${max} then ${seq}`);
          maxSeen.set(e.tenantId, seq);
        }
      }
    },
  };
  return t;
}

export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function appliedCount(pool: pg.Pool, projector: string, tenantPrefix = ''): Promise<number> {
  const r = await pool.query<{ n: string }>(
    'select count(*) as n from bus_test_applied where projector = $1 and starts_with(tenant_id, $2)',
    [projector, tenantPrefix],
  );
  return Number(r.rows[0]!.n);
}

export const uniqueName = (prefix: string): string =>
  `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;

export interface Fixture {
  child: ChildProcess;
  messages: Record<string, unknown>[];
  /** Resolves with the first message (already seen or to come) matching `pred`. */
  waitFor(pred: (m: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal: NodeJS.Signals): Promise<void>;
  stderr(): string;
}

/** Runs shared-events/test/fixtures/<name>.ts in a child Node process (tsx), reading its JSON lines. */
export function spawnFixture(name: string, env: Record<string, string>): Fixture {
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(here, 'fixtures', `${name}.ts`)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const messages: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  let err = '';
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        messages.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        err += `${line}\n`;
      }
      for (const l of listeners) l();
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-20_000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    messages,
    stderr: () => err,
    waitFor: (pred, timeoutMs = 60_000) =>
      new Promise((resolvePromise, reject) => {
        const check = () => {
          const m = messages.find(pred);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolvePromise(m);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`fixture ${name} did not report in ${timeoutMs} ms; stderr:\n${err.slice(-3000)}`));
        }, timeoutMs);
        listeners.add(check);
        child.once('exit', (code) => {
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`fixture ${name} exited (${code}) before reporting; stderr:\n${err.slice(-3000)}`));
          }
        });
        check();
      }),
    kill: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** A consumer that collects a dead-letter topic (Kafka bus) as {group, eventId, reason, attempts}. */
export async function collectDeadLetterTopic(brokers: string[], topic: string) {
  const { createKafkaClient, BUS_HEADERS, decodeEvent } = await import('@keel/shared-events');
  const kafka = createKafkaClient({ brokers, logger: testLogger, clientId: 'dlq-reader' });
  const consumer = kafka.consumer({ groupId: uniqueName('dlq-reader'), sessionTimeout: 6000, maxWaitTimeInMs: 200 });
  const messages: { group: string; eventId: string; reason: string; attempts: number; value: Buffer | null }[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const h = (k: string) => message.headers?.[k]?.toString() ?? '';
      let eventId = '';
      try {
        eventId = message.value ? decodeEvent(message.value).eventId : '';
      } catch {
        // undecodable (poison) message: kept with an empty eventId
      }
      messages.push({
        group: h(BUS_HEADERS.deadLetterGroup),
        eventId,
        reason: h(BUS_HEADERS.deadLetterReason),
        attempts: Number(h(BUS_HEADERS.deadLetterAttempts)),
        value: message.value,
      });
    },
  });
  return { messages, stop: () => consumer.disconnect() };
}

/** Runs every step in order even when one fails (so pools are always ended), then reports the first failure. */
export async function teardown(...steps: (() => Promise<unknown> | undefined)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first) throw first;
}
