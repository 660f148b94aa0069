/**
 * connector-runners as its own process (postgres, kafka and distributed profiles; in the
 * embedded profile `keel dev` runs the runners in-process instead):
 *
 *   DATABASE_URL=postgres://... KEEL_PROFILE=postgres tsx connector-runners/src/main.ts
 *
 * Consumes `runner-webhooks` and `runner-flows` from the bus of the profile, serves the live run
 * log and dry runs on PORT, and shuts down gracefully on SIGTERM/SIGINT (in-flight work finishes
 * within KEEL_RUNNER_SHUTDOWN_GRACE_MS or is handed back).
 */
import pg from 'pg';
import { pino } from 'pino';
import {
  authMigrations,
  busMigrations,
  createBaseApp,
  createBus,
  createSchemaRegistry,
  getPostgreSQLEventStore,
  loadBaseConfig,
  runMigrations,
  startEmbeddedPostgres,
  storeMigrations,
  type KeelRuntime,
} from '@keel/shared-events';
import { connectorRunnerMigrations, mountConnectorRunners, startRunners } from './index.ts';

const config = loadBaseConfig();
const logger = pino({ level: config.logLevel, base: { service: 'connector-runners' } });
const closers: (() => Promise<void>)[] = [];

async function main(): Promise<void> {
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    const server = await startEmbeddedPostgres({ dataDir: `${config.dataDir}/pg`, port: config.embeddedPgPort });
    closers.push(() => server.stop());
    databaseUrl = await server.ensureDatabase('keel');
  }
  await runMigrations(databaseUrl, [storeMigrations, busMigrations, authMigrations, ...connectorRunnerMigrations]);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle database connection lost'));
  closers.push(() => pool.end());
  const registry = createSchemaRegistry();
  const store = getPostgreSQLEventStore({ connectionString: databaseUrl, registry, logger });
  closers.push(() => store.close());
  const runtime: KeelRuntime = {
    config,
    databaseUrl,
    pool,
    store,
    registry,
    logger,
    onClose: (fn) => void closers.push(fn),
  };
  const bus = createBus({ config, store, pool, logger });
  closers.push(() => bus.close());
  const runners = await startRunners(runtime, bus);
  closers.push(() => runners.stop());
  const app = await createBaseApp({ logger, title: 'Keel connector runners' });
  app.readiness.add('database', async () => void (await pool.query('select 1')));
  await mountConnectorRunners(app, runtime);
  await app.listen({ port: config.port, host: config.host });
  closers.push(() => app.close());
  await runners.ready;
  logger.info(
    { port: (app.server.address() as { port: number } | null)?.port, profile: config.profile },
    'connector runners ready',
  );
}

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  // Reverse order of start: stop serving, stop the runners (finish or hand back), then the connections.
  for (const close of closers.reverse())
    await close().catch((err: Error) => logger.error({ err: err.message }, 'shutdown step failed'));
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

main().catch((err: Error) => {
  logger.fatal({ err: err.message }, 'connector runners failed to start');
  process.exit(1);
});
