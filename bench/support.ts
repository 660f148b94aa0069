/**
 * Plumbing shared by the benchmarks: option parsing, throwaway databases, cleanup lists,
 * percentiles and load averages. Not a benchmark itself (bench/run.ts does not list it).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startEmbeddedPostgres } from '@keel/shared-events';

/** Undoes one thing a benchmark set up; run in reverse order at the end. */
export type Cleanup = () => Promise<void>;

/** The number after `--<name>` in the arguments, else `dflt`. Not validated: a bad value is NaN. */
export function numberOption(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

/** Runs the cleanups, last registered first; a failure is logged (its message) and the rest still run. */
export async function runCleanups(cleanups: Cleanup[]): Promise<void> {
  for (const c of cleanups.reverse()) await c().catch((e) => console.error('[cleanup]', (e as Error).message));
}

/**
 * A fresh database `keel_bench_<name>_<random>`, dropped at the end unless `keep`. It is created
 * on DATABASE_URL's server if set, else on an embedded server in `dataDir` on port
 * KEEL_BENCH_PG_PORT (default `port`), stopped at the end. `server` says which, for the results.
 */
export async function benchDatabase(
  name: string,
  cleanups: Cleanup[],
  o: { dataDir: string; port: number; settings?: Record<string, string>; keep?: boolean },
): Promise<{ url: string; server: string }> {
  let admin = process.env.DATABASE_URL;
  let server = 'DATABASE_URL';
  if (!admin) {
    const port = Number(process.env.KEEL_BENCH_PG_PORT ?? o.port);
    const pgServer = await startEmbeddedPostgres({
      dataDir: resolve(o.dataDir),
      port,
      ...(o.settings ? { settings: o.settings } : {}),
    });
    cleanups.push(() => pgServer.stop());
    admin = pgServer.adminUrl;
    server = `embedded (${o.dataDir}, port ${port})`;
  }
  const adminUrl = admin;
  const database = `keel_bench_${name}_${randomBytes(4).toString('hex')}`;
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`create database ${database}`);
  await c.end();
  if (!o.keep) cleanups.push(() => dropDatabase(adminUrl, database));
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return { url: u.toString(), server };
}

/**
 * A fresh database `bench_<name>_<ms>` on the benchmark's own embedded PostgreSQL
 * (.keel-bench/<name>/pg, port KEEL_BENCH_PG_PORT or `port`; DATABASE_URL is not used),
 * dropped and the server stopped at the end.
 */
export async function embeddedBenchDatabase(
  name: string,
  cleanups: Cleanup[],
  o: { port: number },
): Promise<{ url: string; port: number }> {
  const port = Number(process.env.KEEL_BENCH_PG_PORT ?? o.port);
  const server = await startPostgres(resolve(`.keel-bench/${name}/pg`), port);
  cleanups.push(() => server.stop());
  const database = `bench_${name}_${Date.now()}`;
  const url = await server.ensureDatabase(database);
  cleanups.push(() => dropDatabase(server.adminUrl, database));
  return { url, port };
}

/**
 * An embedded PostgreSQL. Its port may lie in the kernel's ephemeral range, so on a busy machine
 * an outgoing connection may hold it for a moment: try again rather than fail.
 */
export async function startPostgres(dataDir: string, port: number) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEmbeddedPostgres({ dataDir, port });
    } catch (e) {
      if (attempt >= 5) throw e ?? new Error(`the embedded PostgreSQL in ${dataDir} did not start on port ${port}`);
      await sleep(1000 * attempt);
    }
  }
}

/** Drops `database` (closing its connections) through the server's admin URL. */
export async function dropDatabase(adminUrl: string, database: string): Promise<void> {
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  await c.query(`drop database if exists ${database} with (force)`);
  await c.end();
}

/**
 * The sample at `fraction` (0..1) of the way through ascending `sorted` samples: index
 * floor(fraction × count), capped at the last. Undefined when there are none; callers choose
 * their own fallback and rounding.
 */
export function percentile(sorted: number[], fraction: number): number | undefined {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
}

/** The 1-minute load average, as is. */
export function loadAverage1m(): number {
  return loadavg()[0]!;
}

/** The 1-minute load average at `atStart` and now, to 2 decimals. */
export function loadAverage1mSince(atStart: number): { atStart: number; atEnd: number } {
  return { atStart: round2(atStart), atEnd: round2(loadAverage1m()) };
}

/** The 1-, 5- and 15-minute load averages, to 2 decimals. */
export function loadAverages(): number[] {
  return loadavg().map((x) => round2(x));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * KEEL_BENCH_CPU_PROF=1: a V8 CPU profile of this process while `run` runs, written to
 * .keel-bench/prof/<name>-<time>.cpuprofile (open it in Chrome DevTools); otherwise just `run`.
 */
export async function profiled<T>(name: string, run: () => Promise<T>): Promise<T> {
  if (!process.env.KEEL_BENCH_CPU_PROF) return run();
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await run();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    const dir = resolve('.keel-bench/prof');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${name}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
    console.error(`[bench] CPU profile of ${name}: ${file}`);
  }
}

/** CPU seconds so far: this process, every process named `postgres` on the machine, and the machine's idle time. */
export interface CpuReading {
  client: number;
  server: number;
  idle: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux we run on

/**
 * Reads where the CPU went, from /proc (Linux only; elsewhere undefined). "server" sums every
 * `postgres` process of the machine: the benchmark's own server, plus any other PostgreSQL that
 * is busy at the same time (on these machines, normally an idle one).
 */
export function cpuReading(): CpuReading | undefined {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return undefined;
  }
  const cpu = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  const idle = (cpu[3]! + cpu[4]!) / TICKS_PER_SECOND; // idle + iowait
  let server = 0;
  for (const entry of readdirSync('/proc')) {
    if (entry.charCodeAt(0) > 57) continue; // not a pid
    let s: string;
    try {
      s = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const close = s.lastIndexOf(')');
    if (s.slice(s.indexOf('(') + 1, close) !== 'postgres') continue;
    const f = s.slice(close + 2).split(' ');
    // utime + stime, plus cutime + cstime: the postmaster's reaped children (a backend or an
    // autovacuum worker that exited during the measurement would otherwise take its CPU time along)
    server += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND;
  }
  const own = process.cpuUsage();
  return { client: (own.user + own.system) / 1e6, server, idle };
}

/** Adds up the CPU spent over timed stretches; `perEvent` reports microseconds per event. */
export class CpuMeter {
  private total = { client: 0, server: 0, idle: 0 };
  private valid = true;
  async measure<T>(run: () => Promise<T>): Promise<T> {
    const before = cpuReading();
    const result = await run();
    const after = cpuReading();
    if (!before || !after) this.valid = false;
    else for (const k of ['client', 'server', 'idle'] as const) this.total[k] += after[k] - before[k];
    return result;
  }
  perEvent(events: number): { clientUs: number; serverUs: number; machineIdleUs: number } | undefined {
    if (!this.valid || events <= 0) return undefined;
    const us = (s: number) => Math.round((s * 1e7) / events) / 10;
    return { clientUs: us(this.total.client), serverUs: us(this.total.server), machineIdleUs: us(this.total.idle) };
  }
}
