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

/** MountService: registers the write-side routes as one encapsulated plugin (config from the environment). */
export const mountCommandService: MountService = async (app, runtime) => {
  await mountCommandServiceWith(app, runtime);
};

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
    ...options.base,
  });
  await mountCommandServiceWith(app, options.runtime, options);
  return app;
}
