import {
  createSchemaRegistry,
  getPostgreSQLEventStore,
  storeMigrations,
  authMigrations,
  runMigrations,
  type BaseConfig,
  type EventStore,
  type KeelRuntime,
  type MigrationSet,
} from '@keel/shared-events';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import { fileURLToPath } from 'node:url';

/** command-service's own tables (idempotency records). */
export const commandServiceOwnMigrations: MigrationSet = {
  directory: fileURLToPath(new URL('../migrations/', import.meta.url)),
  tableName: 'keel_migrations_command_service',
};

/** Everything command-service needs in PostgreSQL besides the event store: the auth/data-key tables and its own. */
export const commandServiceMigrations: MigrationSet[] = [authMigrations, commandServiceOwnMigrations];

export interface ServiceRuntimeOptions {
  config: BaseConfig;
  databaseUrl: string;
  logger?: Logger;
  /** Default: the PostgreSQL event store in the same database. */
  store?: EventStore;
  /** Run the store's and command-service's migrations first. Default true. */
  migrate?: boolean;
  poolSize?: number;
}

/** A KeelRuntime that owns what it opened. */
export interface ServiceRuntime extends KeelRuntime {
  /** Runs the onClose callbacks (reverse order), then closes the store and the pool. */
  close(): Promise<void>;
}

/**
 * A runtime for command-service on its own (main.ts, tests, benchmarks): a pool, the schema
 * registry and the event store. The all-in-one server builds its runtime in the CLI instead.
 */
export async function createServiceRuntime(options: ServiceRuntimeOptions): Promise<ServiceRuntime> {
  const logger = options.logger ?? pino({ level: options.config.logLevel });
  if (options.migrate !== false) {
    await runMigrations(options.databaseUrl, [...(options.store ? [] : [storeMigrations]), ...commandServiceMigrations]);
  }
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize ?? 10 });
  pool.on('error', (err) => logger.warn({ err: err.message }, 'postgres: idle connection lost'));
  const registry = createSchemaRegistry();
  const store =
    options.store ?? getPostgreSQLEventStore({ connectionString: options.databaseUrl, registry, logger, poolSize: options.poolSize ?? 10 });
  const closers: (() => Promise<void>)[] = [];
  let closed = false;
  return {
    config: options.config,
    databaseUrl: options.databaseUrl,
    pool,
    store,
    registry,
    logger,
    onClose: (fn) => void closers.push(fn),
    async close() {
      if (closed) return;
      closed = true;
      for (const fn of closers.reverse()) await fn();
      await store.close();
      await pool.end();
    },
  };
}
