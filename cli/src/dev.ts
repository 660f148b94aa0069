import type { FastifyInstance } from 'fastify';
import {
  adminKeyBanner,
  busKindFor,
  createAccessGuard,
  createAuthenticator,
  createBaseApp,
  createBus,
  loadAdminKey,
  loadAuthConfig,
  startRelay,
  type BaseConfig,
} from '@keel/shared-events';
import { mountCommandService } from '@keel/command-service';
import { mountProjectionService, startProjectors } from '@keel/projection-service';
import { mountConnectorRunners, startRunners } from '@keel/connector-runners';
import { createRuntime, type ProcessRuntime } from './runtime.ts';

/**
 * `keel dev`: the whole of Keel in one process. In the embedded profile that is an embedded
 * PostgreSQL (event store, bus log, read models), the write API, the read API, the projectors
 * and the connector runners, all on one port. In the kafka profile the relay fans the store
 * out to Kafka and the projectors and runners consume from there.
 */
export interface DevServer {
  app: FastifyInstance;
  runtime: ProcessRuntime;
  url: string;
  stop(): Promise<void>;
}

export async function startDevServer(config: BaseConfig, options: { progress?: (line: string) => void } = {}): Promise<DevServer> {
  const say = options.progress ?? (() => undefined);
  const runtime = await createRuntime({ config, progress: say });
  const { store, pool, logger } = runtime;
  try {
    const admin = loadAdminKey({ dataDir: config.dataDir });
    if (admin.generated) process.stderr.write(`${adminKeyBanner(admin)}\n`);
    const auth = loadAuthConfig();
    const authenticator = createAuthenticator({ pool, adminKey: admin.key, jwt: auth.jwt, cacheTtlMs: auth.cacheTtlMs });
    const guard = createAccessGuard({ authenticator, store, logger });

    const app = await createBaseApp({
      logger,
      title: 'Keel',
      description: 'Multi-tenant, event-sourced integration backbone: write API, read API and connector runs in one server.',
      readinessChecks: {
        database: async () => void (await pool.query('select 1')),
        store: async () => void (await store.headPosition()),
      },
    });
    await mountCommandService(app, runtime, { authenticator, guard });
    await mountProjectionService(app, runtime, { authenticator, guard });
    await mountConnectorRunners(app, runtime, { authenticator, guard });

    const bus = createBus({ config, store, pool, logger });
    if (busKindFor(config.profile) === 'kafka') {
      const relay = startRelay({ store, pool, brokers: config.kafkaBrokers, logger, registry: app.metrics });
      runtime.onClose(() => relay.stop());
      say(`relay: store → Kafka ${config.kafkaBrokers.join(',')}`);
    }
    const projectors = await startProjectors(runtime, bus);
    runtime.onClose(() => projectors.stop());
    const runners = await startRunners(runtime, bus);
    runtime.onClose(() => runners.stop());
    runtime.onClose(() => bus.close());

    await app.listen({ port: config.port, host: config.host });
    runtime.onClose(() => app.close());
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host}:${port}`;
    return { app, runtime, url, stop: () => runtime.close() };
  } catch (err) {
    await runtime.close();
    throw err;
  }
}
