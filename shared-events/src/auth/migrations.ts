import { fileURLToPath } from 'node:url';
import type { MigrationSet } from '../db/migrate.ts';

/** The auth and data-key tables (shared-events/migrations/auth); every service that authenticates runs them. */
export const authMigrations: MigrationSet = {
  directory: fileURLToPath(new URL('../../migrations/auth/', import.meta.url)),
  tableName: 'keel_migrations_auth',
};
