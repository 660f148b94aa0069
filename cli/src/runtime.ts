import { resolve } from 'node:path';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import {
  authMigrations,
  busMigrations,
  createSchemaRegistry,
  getEventStoreDBEventStore,
  getPostgreSQLEventStore,
  runMigrations,
  startEmbeddedPostgres,
  storeMigrations,
  type BaseConfig,
  type EventStore,
  type KeelRuntime,
  type MigrationSet,
} from '@keel/shared-events';
import { commandServiceMigrations } from '@keel/command-service';
import { projectionServiceMigrations } from '@keel/projection-service';
import { connectorRunnerMigrations } from '@keel/connector-runners';

/**
 * Builds the one runtime a Keel process shares between its services: the database (an embedded
 * PostgreSQL in the embedded profile), migrations of every package, the event store of the
 * profile, the schema registry and the logger.
 */
export interface RuntimeOptions {
  config: BaseConfig;
  logger?: Logger;
  /** Print progress lines (starting PostgreSQL, migrating) to stderr. */
  progress?: (line: string) => void;
}

export const allMigrations = (): MigrationSet[] => [
  storeMigrations,
  busMigrations,
  authMigrations,
  ...commandServiceMigrations,
  ...projectionServiceMigrations,
  ...connectorRunnerMigrations,
];

/** The runtime plus what only the process that made it may do: shut it all down, in reverse order. */
export interface ProcessRuntime extends KeelRuntime {
  close(): Promise<void>;
}

export async function createRuntime(options: RuntimeOptions): Promise<ProcessRuntime> {
  const { config } = options;
  const say = options.progress ?? (() => undefined);
  const logger =
    options.logger ??
    pino({ level: config.logLevel, redact: ['req.headers.authorization', 'headers.authorization'] });
  const closers: (() => Promise<void>)[] = [];

  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    const t0 = Date.now();
    say(`starting the embedded PostgreSQL in ${resolve(config.dataDir, 'pg')} (port ${config.embeddedPgPort})`);
    const server = await startEmbeddedPostgres({ dataDir: resolve(config.dataDir, 'pg'), port: config.embeddedPgPort });
    databaseUrl = await server.ensureDatabase('keel');
    closers.push(() => server.stop());
    say(`PostgreSQL ready in ${Date.now() - t0} ms${server.started ? '' : ' (reused a running server)'}`);
  }

  const t1 = Date.now();
  await runMigrations(databaseUrl, allMigrations());
  say(`migrations applied in ${Date.now() - t1} ms`);

  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle database connection lost'));
  closers.push(() => pool.end());
  const registry = createSchemaRegistry();
  let store: EventStore;
  if (config.profile === 'distributed') {
    store = getEventStoreDBEventStore({ connectionString: config.eventStoreDbUrl!, registry });
  } else {
    store = getPostgreSQLEventStore({ connectionString: databaseUrl, registry, logger });
  }
  closers.push(() => store.close());

  return {
    config,
    databaseUrl,
    pool,
    store,
    registry,
    logger,
    onClose: (fn) => void closers.push(fn),
    close: () => runClosers(closers, logger),
  };
}

async function runClosers(closers: (() => Promise<void>)[], logger: Logger): Promise<void> {
  while (closers.length) {
    const fn = closers.pop()!;
    await fn().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'error while shutting down'));
  }
}
