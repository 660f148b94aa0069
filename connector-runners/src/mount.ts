import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import {
  createAccessGuard,
  type AccessGuard,
  type Authenticator,
  type KeelRuntime,
  type MigrationSet,
} from '@keel/shared-events';
import { loadRunnerConfig } from './config.ts';
import { createFlowLookup } from './flows/lookup.ts';
import { runnerMetrics } from './metrics.ts';
import { registerRunnerRoutes } from './routes.ts';
import { accessGuardFor, keyringFor, secretOpener } from './runtime-deps.ts';
import type { SecretOpener } from './services.ts';

/** The runner-owned tables (connector-runners/migrations). Run after the store, bus and auth migrations. */
export const connectorRunnerMigrations: MigrationSet[] = [
  {
    directory: resolve(dirname(fileURLToPath(import.meta.url)), '../migrations'),
    tableName: 'keel_migrations_connector_runners',
  },
];

export interface MountOptions {
  /** The host's guard (one per process). Default: one over `authenticator`, or built from the runtime. */
  guard?: AccessGuard;
  authenticator?: Authenticator;
  openSecret?: SecretOpener;
  ssePollMs?: number;
}

/**
 * Mounts the runners' routes (live run log, dry runs) and their metrics on an app built with
 * createBaseApp. The runners themselves are started apart (`startRunners`), in this process or another.
 */
export async function mountConnectorRunners(
  app: FastifyInstance,
  runtime: KeelRuntime,
  options: MountOptions = {},
): Promise<void> {
  const metrics = runnerMetrics();
  const appMetrics = (app as { metrics?: { getSingleMetric(name: string): unknown; registerMetric(m: never): void } })
    .metrics;
  if (appMetrics)
    for (const m of metrics.registry.getMetricsAsArray())
      if (!appMetrics.getSingleMetric(m.name)) appMetrics.registerMetric(m as never);
  const config = loadRunnerConfig();
  const openSecret = options.openSecret ?? secretOpener(keyringFor(runtime));
  await app.register(async (scope) => {
    await registerRunnerRoutes(scope, {
      store: runtime.store,
      pool: runtime.pool,
      guard:
        options.guard ??
        (options.authenticator
          ? createAccessGuard({ authenticator: options.authenticator, store: runtime.store, logger: runtime.logger })
          : accessGuardFor(runtime)),
      logger: runtime.logger,
      dryRun: {
        store: runtime.store,
        lookup: createFlowLookup(runtime.pool),
        openSecret,
        defaultTimeoutMs: config.stepTimeoutMs,
      },
      ...(options.ssePollMs !== undefined && { ssePollMs: options.ssePollMs }),
    });
  });
}
