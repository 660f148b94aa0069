import {
  adminKeyBanner,
  canonicalJson,
  HttpError,
  loadAdminKey,
  loadAuthConfig,
  loadMasterKey,
  startAuthProjection,
  statusByCode,
  type AccessGuard,
  type AuthConfig,
  type Authenticator,
  type KeelRuntime,
  type MasterKey,
} from '@keel/shared-events';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Registry } from 'prom-client';
import { IDEMPOTENCY_KEY_RE, requestHash } from '../app/idempotency.ts';
import { loadCommandServiceConfig, type CommandServiceConfig } from '../config.ts';
import { domainStatus } from '../domain/decider.ts';
import { accessRoutes } from './routes/access.ts';
import { connectorRoutes } from './routes/connectors.ts';
import { flowRoutes } from './routes/flows.ts';
import { hookRoutes } from './routes/hooks.ts';
import { ingestRoutes } from './routes/ingest.ts';
import { sourceRoutes } from './routes/sources.ts';
import { tenantRoutes } from './routes/tenants.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { createCommandService, type CommandService } from './service.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** 'manual': the route handles Idempotency-Key itself (streamed or signature-checked bodies). */
    keelIdempotency?: 'auto' | 'manual';
  }
}

export interface CommandServiceOptions {
  /** Default: from the environment (loadCommandServiceConfig). */
  config?: CommandServiceConfig;
  /** Default: from the environment (loadAuthConfig). */
  auth?: AuthConfig;
  /** Default: KEEL_ADMIN_KEY, else generated in the data dir (printed once). */
  adminKey?: string;
  /** Default: KEEL_MASTER_KEY, else generated in the data dir. */
  masterKey?: MasterKey;
  /** Run the catch-up subscription that keeps the auth tables in step with the log. Default true. */
  authProjection?: boolean;
  /**
   * Share one authenticator (and guard) between the services of a process (the all-in-one
   * server), so a revocation made here is seen by the read side at once too.
   */
  authenticator?: Authenticator;
  guard?: AccessGuard;
  /** Receives the service once mounted (tests, benchmarks). */
  onReady?: (svc: CommandService) => void;
}

const ownership = new WeakMap<FastifyRequest, { scope: string; key: string }>();

/** Idempotency-Key on JSON POSTs: replay the first answer, or reserve the key for this request. */
function jsonIdempotency(svc: CommandService) {
  const preHandler = async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.method !== 'POST' || req.routeOptions.config.keelIdempotency === 'manual') return;
    const key = req.headers['idempotency-key'];
    if (key === undefined) return;
    if (typeof key !== 'string' || !IDEMPOTENCY_KEY_RE.test(key))
      throw new HttpError('VALIDATION_FAILED', 400, 'Idempotency-Key must be 1 to 255 visible ASCII characters', { field: 'headers.idempotency-key' });
    const params = req.params as Record<string, string>;
    const scope = params.tenantId ?? '_platform';
    const hash = requestHash([req.method, req.routeOptions.url ?? req.url, canonicalJson(params ?? {}), canonicalJson(req.body ?? null)]);
    const begun = await svc.idempotency.begin(scope, key, hash);
    switch (begun.kind) {
      case 'mismatch':
        throw new HttpError('IDEMPOTENCY_KEY_REUSED', 422, 'this Idempotency-Key was used with another request');
      case 'inProgress':
        throw new HttpError('IDEMPOTENCY_KEY_IN_USE', 409, 'a request with this Idempotency-Key is still being processed');
      case 'replay':
        for (const [h, v] of Object.entries(begun.headers)) void reply.header(h, v);
        return reply.status(begun.status).header('idempotent-replayed', 'true').type('application/json').send(begun.body);
      case 'new':
        ownership.set(req, { scope, key });
    }
  };

  const onSend = async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const own = ownership.get(req);
    if (!own) return payload;
    ownership.delete(req);
    try {
      if (reply.statusCode >= 200 && reply.statusCode < 300 && typeof payload === 'string') {
        const etag = reply.getHeader('etag');
        await svc.idempotency.complete(own.scope, own.key, {
          status: reply.statusCode,
          body: payload,
          headers: typeof etag === 'string' ? { etag } : {},
        });
      } else {
        // Failed requests are not remembered: a retry runs again.
        await svc.idempotency.release(own.scope, own.key);
      }
    } catch (err) {
      req.log.error({ err }, 'could not record the Idempotency-Key answer');
    }
    return payload;
  };
  return { preHandler, onSend };
}

/**
 * Mounts the write side into an app made by createBaseApp: routes, hooks and content-type
 * parsers live in an encapsulated plugin; no swagger, health or metrics endpoints of its own.
 */
export async function mountCommandServiceWith(app: FastifyInstance, runtime: KeelRuntime, options: CommandServiceOptions = {}): Promise<CommandService> {
  for (const [code, status] of Object.entries({ ...domainStatus, KEY_DESTROYED: 410, KEY_REVOKED: 401 }))
    if (!(code in statusByCode)) statusByCode[code] = status;

  const config = options.config ?? loadCommandServiceConfig();
  const auth = options.auth ?? loadAuthConfig();
  let adminKey = options.adminKey;
  if (!adminKey && !options.authenticator) {
    const loaded = loadAdminKey({ dataDir: runtime.config.dataDir });
    if (loaded.generated) process.stderr.write(adminKeyBanner(loaded) + '\n');
    adminKey = loaded.key;
  }
  const masterKey = options.masterKey ?? loadMasterKey({ dataDir: runtime.config.dataDir });
  const registry = (app as { metrics?: Registry }).metrics ?? new Registry();
  const svc = createCommandService({
    runtime,
    config,
    auth,
    adminKey,
    masterKey,
    registry,
    authenticator: options.authenticator,
    guard: options.guard,
  });

  const projection = options.authProjection === false ? undefined : await startAuthProjection({ store: runtime.store, pool: runtime.pool, logger: runtime.logger });
  // The process that built the app checks the database and the store; this adds what is ours.
  if (projection && app.hasDecorator('readiness'))
    app.readiness.add('auth-projection', () => {
      if (!projection.isCaughtUp()) throw new Error('catching up with the log');
    });
  const purge = setInterval(() => {
    svc.idempotency.purge().catch((err) => runtime.logger.warn({ err }, 'idempotency purge failed'));
  }, 3600_000);
  purge.unref();

  await app.register(async (scope) => {
    // JSON only (plus NDJSON for ingest): a text/plain body is a 415, not a string to validate.
    scope.removeContentTypeParser('text/plain');
    // Action routes (pause, enable, ...) may come without a body.
    scope.addHook('preValidation', async (req) => {
      if (req.body === undefined && (req.method === 'POST' || req.method === 'PATCH')) req.body = {};
    });
    const idem = jsonIdempotency(svc);
    scope.addHook('preHandler', idem.preHandler);
    scope.addHook('onSend', idem.onSend);
    scope.addHook('onClose', async () => {
      clearInterval(purge);
      await projection?.stop();
      await svc.ingestThreads?.close();
    });

    await tenantRoutes(scope, svc);
    await accessRoutes(scope, svc);
    await connectorRoutes(scope, svc);
    await flowRoutes(scope, svc);
    await webhookRoutes(scope, svc);
    await sourceRoutes(scope, svc);
    await scope.register(async (s) => ingestRoutes(s, svc));
    await scope.register(async (s) => hookRoutes(s, svc));
  });
  options.onReady?.(svc);
  return svc;
}
