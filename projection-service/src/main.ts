/**
 * projection-service as its own process (postgres, kafka and distributed profiles):
 * `tsx projection-service/src/main.ts`. It runs the projectors (`projector-audit`,
 * `projector-dashboard`) on the profile's bus and serves the read-side routes on PORT.
 * Set KEEL_PROJECTORS=off to serve only (e.g. several API replicas, one projector process),
 * or KEEL_HTTP=off to only project. The embedded profile runs all of this inside `keel dev`.
 */
import pg from 'pg';
import { pino } from 'pino';
import {
  ConfigError,
  authMigrations,
  busMigrations,
  createBaseApp,
  createBus,
  createSchemaRegistry,
  envReader,
  getEventStoreDBEventStore,
  getPostgreSQLEventStore,
  loadBaseConfig,
  runMigrations,
  storeMigrations,
} from '@keel/shared-events';
import type { EventStore, KeelRuntime } from '@keel/shared-events';
import { loadProjectionConfig } from './config.ts';
import { mountProjectionService, projectionServiceMigrations, startProjectors } from './index.ts';

async function main(): Promise<void> {
  const config = loadBaseConfig();
  if (config.profile === 'embedded') {
    throw new ConfigError([
      'projection-service runs on its own in the postgres, kafka and distributed profiles; use `npm start` (keel dev) for the embedded one',
    ]);
  }
  const env = envReader();
  const runProjectors = env.oneOf('KEEL_PROJECTORS', ['on', 'off'] as const, 'on') === 'on';
  const serveHttp = env.oneOf('KEEL_HTTP', ['on', 'off'] as const, 'on') === 'on';
  if (env.problems.length) throw new ConfigError(env.problems);
  // Validated before anything starts: a bad signing key must stop the process, not the first checkpoint.
  const projectionConfig = loadProjectionConfig(config);
  const logger = pino({ level: config.logLevel, base: { service: 'projection-service' } });
  const databaseUrl = config.databaseUrl!;

  await runMigrations(databaseUrl, [
    ...(config.profile === 'distributed' ? [] : [storeMigrations]),
    busMigrations,
    authMigrations,
    ...projectionServiceMigrations,
  ]);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 20 });
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle database connection lost'));
  const registry = createSchemaRegistry();
  const store: EventStore =
    config.profile === 'distributed'
      ? getEventStoreDBEventStore({ connectionString: config.eventStoreDbUrl!, registry })
      : getPostgreSQLEventStore({ connectionString: databaseUrl, registry, logger });
  const closers: (() => Promise<void>)[] = [];
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
  const projectors = runProjectors ? await startProjectors(runtime, bus, { config: projectionConfig }) : undefined;
  const app = serveHttp ? await createBaseApp({ logger, title: 'Keel read side' }) : undefined;
  if (app) {
    await mountProjectionService(app, runtime, { config: projectionConfig });
    if (projectors) app.readiness.add('projectors', async () => void (await projectors.ready));
    await app.listen({ port: config.port, host: config.host });
  }
  logger.info(
    { projectors: runProjectors, http: serveHttp, signingKey: projectionConfig.signingKeySource },
    'projection-service started',
  );

  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    await app?.close();
    await projectors?.stop();
    await bus.close();
    for (const fn of closers.reverse()) await fn().catch(() => undefined);
    await store.close();
    await pool.end();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
