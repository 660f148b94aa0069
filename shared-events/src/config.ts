import { resolve } from 'node:path';

/**
 * Environment configuration, validated once at start with a clear message per bad value.
 */
export type Profile = 'embedded' | 'postgres' | 'kafka' | 'distributed';

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface EnvReader {
  problems: string[];
  str(name: string, fallback?: string): string | undefined;
  int(name: string, fallback: number, min?: number, max?: number): number;
  oneOf<T extends string>(name: string, values: readonly T[], fallback: T): T;
  list(name: string): string[];
}

export function envReader(env: NodeJS.ProcessEnv = process.env): EnvReader {
  const problems: string[] = [];
  return {
    problems,
    str: (name, fallback) => {
      const v = env[name];
      return v === undefined || v === '' ? fallback : v;
    },
    int: (name, fallback, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) => {
      const v = env[name];
      if (v === undefined || v === '') return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        problems.push(`${name}="${v}" must be a whole number from ${min} to ${max}`);
        return fallback;
      }
      return n;
    },
    oneOf: (name, values, fallback) => {
      const v = env[name];
      if (v === undefined || v === '') return fallback;
      if (!(values as readonly string[]).includes(v)) {
        problems.push(`${name}="${v}" must be one of ${values.join(', ')}`);
        return fallback;
      }
      return v as (typeof values)[number];
    },
    list: (name) =>
      (env[name] ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
  };
}

export interface BaseConfig {
  profile: Profile;
  port: number;
  host: string;
  dataDir: string;
  /** External PostgreSQL; unset in the embedded profile. */
  databaseUrl?: string;
  embeddedPgPort: number;
  kafkaBrokers: string[];
  eventStoreDbUrl?: string;
  logLevel: string;
}

export function loadBaseConfig(env: NodeJS.ProcessEnv = process.env): BaseConfig {
  const r = envReader(env);
  const profile = r.oneOf('KEEL_PROFILE', ['embedded', 'postgres', 'kafka', 'distributed'] as const, 'embedded');
  const cfg: BaseConfig = {
    profile,
    port: r.int('PORT', 3000, 0, 65535),
    host: r.str('HOST', '127.0.0.1')!,
    dataDir: resolve(r.str('KEEL_DATA_DIR', './.keel')!),
    databaseUrl: r.str('DATABASE_URL'),
    embeddedPgPort: r.int('KEEL_PG_PORT', 54320, 1, 65535),
    kafkaBrokers: r.list('KAFKA_BROKERS'),
    eventStoreDbUrl: r.str('KEEL_EVENTSTOREDB_URL'),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
  };
  if (profile !== 'embedded' && !cfg.databaseUrl) r.problems.push(`DATABASE_URL is required in the ${profile} profile`);
  if ((profile === 'kafka' || profile === 'distributed') && cfg.kafkaBrokers.length === 0)
    r.problems.push(`KAFKA_BROKERS is required in the ${profile} profile (e.g. 127.0.0.1:19092)`);
  if (profile === 'distributed' && !cfg.eventStoreDbUrl)
    r.problems.push('KEEL_EVENTSTOREDB_URL is required in the distributed profile');
  if (r.problems.length) throw new ConfigError(r.problems);
  return cfg;
}
