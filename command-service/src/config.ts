import { availableParallelism } from 'node:os';
import { ConfigError, envReader } from '@keel/shared-events';

/**
 * command-service settings from the environment, validated once at start. Every value has a
 * default fit for a laptop; see command-service/README.md.
 */
export interface CommandServiceConfig {
  /** Bytes, for JSON command bodies (KEEL_BODY_LIMIT). */
  bodyLimitBytes: number;
  ingest: {
    /** Whole ingest body, NDJSON or JSON (KEEL_INGEST_MAX_BYTES). */
    maxBytes: number;
    /** One record / NDJSON line (KEEL_INGEST_MAX_RECORD_BYTES). */
    maxRecordBytes: number;
    /** Records per store transaction (KEEL_INGEST_BATCH). */
    batchSize: number;
    /** At most this many rejections are listed in the answer; `rejectedCount` has the total. */
    maxRejectedListed: number;
    /**
     * Worker threads for NDJSON ingest (KEEL_INGEST_THREADS); 0: in the request thread. Default:
     * 2 on a machine with more than one core, else 0. Used with the PostgreSQL store only.
     */
    threads: number;
  };
  rateLimit: {
    /** Requests per second per key (KEEL_RATE_LIMIT_RPS) and burst (KEEL_RATE_LIMIT_BURST). */
    requestsPerSecond: number;
    requestBurst: number;
    /** Ingested records per second per key (KEEL_INGEST_RECORDS_PER_SECOND) and burst (KEEL_INGEST_RECORDS_BURST). */
    recordsPerSecond: number;
    recordBurst: number;
  };
  /** Retries of a command after a concurrency conflict before answering 409 (KEEL_COMMAND_RETRIES). */
  commandRetries: number;
  /** How long an Idempotency-Key is remembered (KEEL_IDEMPOTENCY_TTL_HOURS). */
  idempotencyTtlHours: number;
  /** Accepted clock difference of inbound webhook signatures (KEEL_HOOK_TOLERANCE_SECONDS). */
  hookToleranceSeconds: number;
}

export function loadCommandServiceConfig(env: NodeJS.ProcessEnv = process.env): CommandServiceConfig {
  const r = envReader(env);
  const cfg: CommandServiceConfig = {
    bodyLimitBytes: r.int('KEEL_BODY_LIMIT', 1024 * 1024, 1024, 64 * 1024 * 1024),
    ingest: {
      maxBytes: r.int('KEEL_INGEST_MAX_BYTES', 64 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
      maxRecordBytes: r.int('KEEL_INGEST_MAX_RECORD_BYTES', 256 * 1024, 256, 16 * 1024 * 1024),
      batchSize: r.int('KEEL_INGEST_BATCH', 2500, 1, 50_000),
      maxRejectedListed: r.int('KEEL_INGEST_MAX_REJECTED_LISTED', 1000, 1, 100_000),
      threads: r.int('KEEL_INGEST_THREADS', availableParallelism() > 1 ? 2 : 0, 0, 64),
    },
    rateLimit: {
      requestsPerSecond: r.int('KEEL_RATE_LIMIT_RPS', 1000, 1, 1_000_000),
      requestBurst: r.int('KEEL_RATE_LIMIT_BURST', 2000, 1, 10_000_000),
      recordsPerSecond: r.int('KEEL_INGEST_RECORDS_PER_SECOND', 200_000, 1, 100_000_000),
      recordBurst: r.int('KEEL_INGEST_RECORDS_BURST', 400_000, 1, 1_000_000_000),
    },
    commandRetries: r.int('KEEL_COMMAND_RETRIES', 3, 0, 20),
    idempotencyTtlHours: r.int('KEEL_IDEMPOTENCY_TTL_HOURS', 24, 1, 24 * 30),
    hookToleranceSeconds: r.int('KEEL_HOOK_TOLERANCE_SECONDS', 300, 1, 3600),
  };
  if (r.problems.length) throw new ConfigError(r.problems);
  return cfg;
}
