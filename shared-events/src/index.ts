export * from './envelope.ts';
export * from './errors.ts';
export * from './ids.ts';
export * from './config.ts';
export type * from './store/port.ts';
export type * from './schemas/registry-port.ts';
export { startEmbeddedPostgres } from './embedded/postgres.ts';
export type { EmbeddedPostgresHandle, EmbeddedPostgresOptions } from './embedded/postgres.ts';
