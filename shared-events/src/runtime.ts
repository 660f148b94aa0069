import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { BaseConfig } from './config.ts';
import type { EventSchemaRegistry } from './schemas/registry-port.ts';
import type { EventStore } from './store/port.ts';

/**
 * What a service gets when it is mounted into a process (the embedded `keel dev` server, or its
 * own `main.ts`). Services never import each other; the CLI builds one runtime and hands it to
 * each service's `mount(app, runtime)`.
 */
export interface KeelRuntime {
  config: BaseConfig;
  /** PostgreSQL holding read models, keys, idempotency records (and the event log in the postgres store). */
  databaseUrl: string;
  pool: pg.Pool;
  store: EventStore;
  registry: EventSchemaRegistry;
  logger: Logger;
  /** Called on shutdown in reverse order of registration. */
  onClose(fn: () => Promise<void>): void;
}

export type MountService = (app: FastifyInstance, runtime: KeelRuntime) => Promise<void>;
