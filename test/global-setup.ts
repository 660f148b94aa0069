import { resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../shared-events/src/embedded/postgres.ts';

/**
 * Starts what the suites talk to, once per `npm test`:
 * - PostgreSQL: DATABASE_URL when set, else a real embedded PostgreSQL in .keel-test/pg.
 *   Each suite creates its own database from it (test/support.ts `freshDatabase`).
 * - Kafka: KAFKA_BROKERS when set, else a real single-node broker from infra/kafka when Java is present.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stops: (() => Promise<void>)[] = [];
  let pgUrl = process.env.DATABASE_URL;
  if (!pgUrl) {
    const t0 = Date.now();
    const pg = await startEmbeddedPostgres({
      dataDir: resolve('.keel-test/pg'),
      port: Number(process.env.KEEL_TEST_PG_PORT ?? 25433),
      settings: { fsync: 'on' },
    });
    pgUrl = pg.adminUrl;
    stops.push(() => pg.stop());
    console.log(`[setup] embedded PostgreSQL ready at 127.0.0.1:${new URL(pgUrl).port} in ${Date.now() - t0} ms`);
  } else {
    console.log('[setup] using DATABASE_URL for PostgreSQL');
  }
  process.env.KEEL_TEST_DATABASE_URL = pgUrl;
  project.provide('databaseUrl', pgUrl);

  const kafka = await startKafkaIfPossible();
  if (kafka.brokers) {
    process.env.KAFKA_BROKERS = kafka.brokers;
    if (kafka.stop) stops.push(kafka.stop);
  } else {
    process.env.KEEL_KAFKA_SKIP_REASON = kafka.reason;
  }
  project.provide('kafkaBrokers', kafka.brokers ?? '');

  return async () => {
    for (const stop of stops.reverse()) await stop().catch((e) => console.error('[teardown]', e));
  };
}

async function startKafkaIfPossible(): Promise<{ brokers?: string; stop?: () => Promise<void>; reason?: string }> {
  if (process.env.KAFKA_BROKERS) return { brokers: process.env.KAFKA_BROKERS };
  if (process.env.KEEL_NO_KAFKA === '1') return { reason: 'KEEL_NO_KAFKA=1' };
  try {
    // infra/kafka/broker.mjs assembles a real Apache Kafka broker (KRaft) from Maven Central jars.
    // The tests get their own port and a fresh data directory, so a developer's `npm run kafka:up`
    // broker and earlier runs' topics never interfere.
    const broker = await import('../infra/kafka/broker.mjs');
    const port = Number(process.env.KEEL_TEST_KAFKA_PORT ?? 19192);
    const opts = { port, controllerPort: port + 1, dataDir: resolve('.keel-test/kafka') };
    if (broker.runningPid(opts) === undefined) await broker.resetBroker(opts).catch(() => undefined);
    const t0 = Date.now();
    const b = await broker.startBroker(opts).catch(async (e: Error) => {
      // One clean retry: a first start on a cold machine (jar fetch, JIT) can trip over itself.
      console.warn(`[setup] Kafka broker failed to start, retrying once from a clean data dir: ${e.message}`);
      await broker.stopBroker({ ...opts, signal: 'SIGKILL' }).catch(() => undefined);
      await broker.resetBroker(opts).catch(() => undefined);
      return broker.startBroker(opts);
    });
    console.log(`[setup] Kafka broker ready at ${b.brokers} in ${Date.now() - t0} ms`);
    process.env.KEEL_TEST_KAFKA_PORT = String(port);
    process.env.KEEL_TEST_KAFKA_DATA_DIR = opts.dataDir;
    return { brokers: b.brokers, stop: b.alreadyRunning ? undefined : async () => void (await b.stop()) };
  } catch (e) {
    const reason = `no Kafka broker: ${(e as Error).message}`;
    console.warn(`[setup] ${reason}`);
    return { reason };
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    kafkaBrokers: string;
  }
}
