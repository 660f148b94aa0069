/**
 * command-service as its own process (postgres, kafka and distributed profiles):
 * `tsx command-service/src/main.ts`, configured from the environment (shared-events config.ts
 * and command-service config.ts). The embedded profile runs it inside `keel dev` instead.
 */
import {
  busKindFor,
  busMigrations,
  ConfigError,
  createSchemaRegistry,
  getEventStoreDBEventStore,
  loadBaseConfig,
  runMigrations,
  startRelay,
  type EventStore,
} from '@keel/shared-events';
import { pino } from 'pino';
import { buildApp } from './index.ts';
import { createServiceRuntime } from './runtime.ts';

async function main(): Promise<void> {
  const config = loadBaseConfig();
  if (config.profile === 'embedded')
    throw new ConfigError(['command-service runs on its own in the postgres, kafka and distributed profiles; use `npm start` (keel dev) for the embedded one']);
  const logger = pino({ level: config.logLevel, base: { service: 'command-service' } });
  const store: EventStore | undefined =
    config.profile === 'distributed'
      ? getEventStoreDBEventStore({ connectionString: config.eventStoreDbUrl!, registry: createSchemaRegistry(), logger })
      : undefined;
  const runtime = await createServiceRuntime({ config, databaseUrl: config.databaseUrl!, logger, store });
  const app = await buildApp({ runtime });
  // The write side owns the store, so it also runs the relay to Kafka (kafka and distributed
  // profiles). A lease keeps exactly one relay active however many replicas run; the others stand by.
  const relay =
    busKindFor(config.profile) === 'kafka'
      ? await runMigrations(config.databaseUrl!, [busMigrations]).then(() =>
          startRelay({ store: runtime.store, pool: runtime.pool, brokers: config.kafkaBrokers, logger, registry: app.metrics }),
        )
      : undefined;
  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    await relay?.stop();
    await app.close();
    await runtime.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  await app.listen({ port: config.port, host: config.host });
}

main().catch((err) => {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
