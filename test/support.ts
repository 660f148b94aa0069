import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, it } from 'vitest';

/**
 * Shared test plumbing. Suites talk to real servers; a server that cannot run here is skipped
 * with a printed reason, unless KEEL_REQUIRE names it (CI sets KEEL_REQUIRE=kafka): then the
 * suite fails instead.
 */
export function serverUrl(): string {
  const url = process.env.KEEL_TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('no PostgreSQL for tests: the global setup did not run');
  return url;
}

const created: string[] = [];

/** A new, empty database on the test server; dropped when the suite ends. */
export async function freshDatabase(prefix = 't'): Promise<string> {
  const name = `keel_${prefix}_${randomBytes(5).toString('hex')}`.toLowerCase();
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  created.push(name);
  const u = new URL(serverUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

export async function dropDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

afterAll(async () => {
  while (created.length) await dropDatabase(`${serverUrl().replace(/\/[^/]*$/, '')}/${created.pop()}`).catch(() => undefined);
});

function required(name: string): boolean {
  return (process.env.KEEL_REQUIRE ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .includes(name);
}

/**
 * `describe` for a suite that needs an external server. When it is absent: skipped with the
 * reason printed, or, when KEEL_REQUIRE names it, a failing test that says why.
 */
export function describeWithServer(
  server: 'kafka' | 'eventstoredb',
  title: string,
  available: string | undefined,
  reason: string,
  body: (url: string) => void,
): void {
  if (available) {
    describe(title, () => body(available));
    return;
  }
  if (required(server)) {
    describe(title, () => {
      it(`requires ${server} (KEEL_REQUIRE=${process.env.KEEL_REQUIRE})`, () => {
        throw new Error(`${server} is required but unavailable: ${reason}`);
      });
    });
    return;
  }
  console.warn(`[skip] ${title}: ${reason}`);
  describe.skip(title, () => body(''));
}

export function kafkaBrokers(): string | undefined {
  return process.env.KAFKA_BROKERS || undefined;
}

export function kafkaSkipReason(): string {
  return process.env.KEEL_KAFKA_SKIP_REASON ?? 'KAFKA_BROKERS is unset and no broker could be started';
}
