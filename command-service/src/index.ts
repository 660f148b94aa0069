import { createBaseApp, type BaseAppOptions, type KeelRuntime, type MountService } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { mountCommandServiceWith, type CommandServiceOptions } from './http/plugin.ts';

/**
 * command-service: the write side. Tenants, access control (API keys, users, roles),
 * integration definitions (connectors, flows, webhooks, inbound sources), batch ingest and
 * inbound webhooks, over HTTP; commands go through pure deciders into the event store.
 * See command-service/README.md.
 */
export { mountCommandServiceWith } from './http/plugin.ts';
export type { CommandServiceOptions } from './http/plugin.ts';
export type { CommandService } from './http/service.ts';
export { commandServiceMigrations, commandServiceOwnMigrations, createServiceRuntime } from './runtime.ts';
export type { ServiceRuntime, ServiceRuntimeOptions } from './runtime.ts';
export { loadCommandServiceConfig } from './config.ts';
export type { CommandServiceConfig } from './config.ts';
export * as domain from './domain/index.ts';
export { signatureHeader as inboundSignatureHeader } from './ingest/signature.ts';

/**
 * A MountService: registers the write-side routes as one encapsulated plugin. Configuration
 * comes from the environment unless given; the all-in-one server passes its shared
 * authenticator and guard.
 */
export async function mountCommandService(app: FastifyInstance, runtime: KeelRuntime, options: CommandServiceOptions = {}): Promise<void> {
  await mountCommandServiceWith(app, runtime, options);
}
// Checked here so that a change of the MountService contract breaks the build, not the CLI.
const _isMountService: MountService = mountCommandService;
void _isMountService;

export interface BuildAppOptions extends CommandServiceOptions {
  runtime: KeelRuntime;
  /** Passed to createBaseApp (logger defaults to the runtime's). */
  base?: BaseAppOptions;
}

/** createBaseApp + the command service: a complete app for tests (`app.inject`) and main.ts (`listen`). */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const app = await createBaseApp({
    logger: options.runtime.logger,
    title: 'Keel command-service',
    description: 'The write side of Keel: tenants, access, integrations, batch ingest, inbound webhooks',
    bodyLimit: options.config?.bodyLimitBytes,
    readinessChecks: {
      database: async () => void (await options.runtime.pool.query('select 1')),
      store: async () => void (await options.runtime.store.headPosition()),
    },
    ...options.base,
  });
  await mountCommandServiceWith(app, options.runtime, options);
  return app;
}
