import {
  applyAuthEventsInTransaction,
  AUTH_CATEGORIES,
  createAccessGuard,
  createAuthenticator,
  createKeyring,
  HttpError,
  parseStreamName,
  principalOf,
  type AccessGuard,
  type Authenticator,
  type AuthConfig,
  type EventStore,
  type KeelRuntime,
  type Keyring,
  type MasterKey,
  type Permission,
  type Principal,
  type RecordedEvent,
} from '@keel/shared-events';
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Registry } from 'prom-client';
import type { CommandContext } from '../app/handle-command.ts';
import { createIdempotencyStore, type IdempotencyStore } from '../app/idempotency.ts';
import { createCommandMetrics, instrumentStore, type CommandMetrics } from '../app/metrics.ts';
import { createIngestThreads, type IngestThreads } from '../ingest/threads.ts';
import type { CommandServiceConfig } from '../config.ts';
import type { CallerRole } from '../domain/access.ts';
import { createRateLimiter, type RateLimiter } from './rate-limit.ts';

/** Everything the routes need, built once per mount. */
export interface CommandService {
  runtime: KeelRuntime;
  config: CommandServiceConfig;
  /** The runtime's store, with append metrics. */
  store: EventStore;
  keyring: Keyring;
  authenticator: Authenticator;
  guard: AccessGuard;
  idempotency: IdempotencyStore;
  metrics: CommandMetrics;
  commands: CommandContext;
  limits: { requests: RateLimiter; records: RateLimiter; hooks: RateLimiter };
  /** NDJSON ingest on worker threads; absent when configured off or the store is not PostgreSQL. */
  ingestThreads?: IngestThreads;
  /** onRequest hooks of a route needing `permission`: authenticate, authorize, rate-limit. */
  protect(permission: Permission, options?: { ingest?: boolean }): onRequestAsyncHookHandler[];
}

export interface CommandServiceParts {
  runtime: KeelRuntime;
  config: CommandServiceConfig;
  auth: AuthConfig;
  /** Unused when an authenticator is given. */
  adminKey?: string;
  masterKey: MasterKey;
  registry: Registry;
  authenticator?: Authenticator;
  guard?: AccessGuard;
}

/** The key a caller is rate-limited under. */
export function limiterKey(p: Principal): string {
  switch (p.kind) {
    case 'platformAdmin':
      return 'platform-admin';
    case 'apiKey':
      return `key:${p.keyId}`;
    case 'user':
      return `user:${p.tenantId}:${p.userId}`;
  }
}

export function callerRole(p: Principal): CallerRole {
  return p.kind === 'platformAdmin' ? 'platformAdmin' : p.role;
}

export function createCommandService(parts: CommandServiceParts): CommandService {
  const { runtime, config } = parts;
  const metrics = createCommandMetrics(parts.registry);
  const store = instrumentStore(runtime.store, metrics);
  const keyring = createKeyring({ pool: runtime.pool, masterKey: parts.masterKey });
  const authenticator =
    parts.authenticator ??
    createAuthenticator({
      pool: runtime.pool,
      adminKey: parts.adminKey ?? '',
      jwt: parts.auth.jwt,
      cacheTtlMs: parts.auth.cacheTtlMs,
    });
  if (!parts.authenticator && !parts.adminKey) throw new Error('command-service needs an admin key or an authenticator');
  const guard = parts.guard ?? createAccessGuard({ authenticator, store, logger: runtime.logger });
  const idempotency = createIdempotencyStore({ pool: runtime.pool, keyring, ttlHours: config.idempotencyTtlHours });
  const limits = {
    requests: createRateLimiter({ ratePerSecond: config.rateLimit.requestsPerSecond, burst: config.rateLimit.requestBurst }),
    records: createRateLimiter({ ratePerSecond: config.rateLimit.recordsPerSecond, burst: config.rateLimit.recordBurst }),
    hooks: createRateLimiter({ ratePerSecond: config.rateLimit.requestsPerSecond, burst: config.rateLimit.requestBurst }),
  };

  const authCategories = new Set<string>(AUTH_CATEGORIES);
  async function afterAppend(events: RecordedEvent[]): Promise<void> {
    // The auth tables follow tenant-*/access-* at once, so a new key works and a revoked one
    // fails on the very next request. The events are already stored, so a failure here must not
    // fail the command: the catch-up subscription applies them moments later (it also destroys
    // an erased tenant's keys).
    const auth = events.filter((e) => authCategories.has(parseStreamName(e.streamId)?.category ?? ''));
    try {
      if (auth.length) await applyAuthEventsInTransaction(runtime.pool, auth);
      for (const e of events) if (e.type === 'TenantErased') await keyring.destroyTenantKeys(e.tenantId);
    } catch (err) {
      runtime.logger.error({ err }, 'inline auth projection failed; the catch-up subscription will apply these events');
    }
    for (const e of events) {
      if (e.type === 'TenantErased' || e.type === 'TenantSuspended' || e.type === 'TenantReinstated') authenticator.forgetTenant(e.tenantId);
      if (e.type === 'ApiKeyRevoked') authenticator.forgetKey((e.data as { keyId: string }).keyId);
    }
  }

  function rateLimited(limit: string, seconds: number, reply: FastifyReply): HttpError {
    metrics.rateLimited.inc({ limit });
    void reply.header('retry-after', String(seconds));
    return new HttpError('RATE_LIMITED', 429, `too many ${limit}; retry in ${seconds} s`, { retryAfterSeconds: seconds, limit });
  }

  const protect: CommandService['protect'] = (permission, options = {}) => {
    const rateLimit: onRequestAsyncHookHandler = async (req: FastifyRequest, reply: FastifyReply) => {
      const key = limiterKey(principalOf(req));
      const wait = limits.requests.take(key);
      if (wait) throw rateLimited('requests', wait, reply);
      if (options.ingest) {
        const recordsWait = limits.records.retryAfter(key);
        if (recordsWait) throw rateLimited('records', recordsWait, reply);
      }
    };
    return [guard.require(permission), rateLimit];
  };

  // The threads open their own PostgreSQL store on the runtime's database: only when that is
  // where the runtime's store keeps its events.
  const ingestThreads =
    config.ingest.threads > 0 && runtime.store.kind === 'postgresql' && runtime.databaseUrl
      ? createIngestThreads({
          count: config.ingest.threads,
          data: { databaseUrl: runtime.databaseUrl, poolSize: 3, ingest: config.ingest },
          logger: runtime.logger,
        })
      : undefined;

  return {
    runtime,
    config,
    store,
    ...(ingestThreads && { ingestThreads }),
    keyring,
    authenticator,
    guard,
    idempotency,
    metrics,
    commands: { store, metrics, retries: config.commandRetries, afterAppend },
    limits,
    protect,
  };
}
