import knex from 'knex';

/**
 * Runs one package's knex migrations (plain .ts/.js files exporting `up`/`down`). Each package
 * keeps its own directory and its own bookkeeping table, so packages evolve their tables
 * independently and the CLI composes them in dependency order.
 */
export interface MigrationSet {
  /** Absolute path of the migrations folder. */
  directory: string;
  /** e.g. 'keel_migrations_store'. */
  tableName: string;
}

export async function runMigrations(connectionString: string, sets: MigrationSet[]): Promise<void> {
  const db = knex({ client: 'pg', connection: connectionString, pool: { min: 0, max: 2 } });
  try {
    for (const set of sets) {
      await db.migrate.latest({
        directory: set.directory,
        tableName: set.tableName,
        loadExtensions: ['.ts', '.js', '.mjs'],
      });
    }
  } finally {
    await db.destroy();
  }
}
