import AjvCompiler from '@fastify/ajv-compiler';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Counter, Histogram, Registry, type CounterConfiguration, type HistogramConfiguration } from 'prom-client';
import { uuidv7 } from '../ids.ts';
import { registerErrorHandler } from './errors.ts';

/**
 * The Fastify base every Keel process builds on (each service's own main.ts, the all-in-one
 * `keel dev` server, and the tests through `app.inject()`): request and correlation ids, a pino
 * logger bound to tenantId/correlationId, the one error handler, body limits, OpenAPI generated
 * from the route schemas at /docs, Prometheus /metrics, /health and /ready.
 *
 * Services add their routes afterwards as encapsulated plugins (`mount(app, runtime)`), which is
 * why swagger is registered here, first: it collects the routes registered after it.
 */

/** Throws (or rejects) when the dependency is not usable; the message shows up in /ready. */
export type ReadinessCheck = () => Promise<void> | void;

export interface BaseAppOptions {
  /** A pino logger to use (and bind per request); default: a new pino logger at `logLevel`. */
  logger?: Logger;
  /** Default 'info'; 'silent' for tests. */
  logLevel?: string;
  /** Bytes, for every content type whose route does not say otherwise. Default 1 MiB. */
  bodyLimit?: number;
  /** OpenAPI info. */
  title?: string;
  version?: string;
  description?: string;
  /** Serve the OpenAPI document and UI at /docs. Default true. */
  docs?: boolean;
  /** Initial readiness checks by name; more can be added with `app.readiness.add`. */
  readinessChecks?: Record<string, ReadinessCheck>;
  /** Per check, before it counts as failed. Default 2000 ms. */
  readinessTimeoutMs?: number;
  /** Process-level metrics (event loop lag, GC, memory) in /metrics. Default true. */
  defaultMetrics?: boolean;
  /** Trust X-Forwarded-* (behind an ingress). Default false. */
  trustProxy?: boolean;
}

export interface ReadinessRegistry {
  add(name: string, check: ReadinessCheck): void;
  run(): Promise<{ ready: boolean; checks: Record<string, string> }>;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The Prometheus registry served at /metrics; services register their metrics in it. */
    metrics: Registry;
    readiness: ReadinessRegistry;
  }
  interface FastifyRequest {
    /** From `X-Correlation-Id` when the caller sent a sane one, else the request id. */
    correlationId: string;
  }
}

const ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/** Fastify's default Ajv removes unknown properties and coerces body types; we want both refused. */
function buildValidatorFactory() {
  const factory = AjvCompiler();
  return (externalSchemas: unknown, options: { customOptions?: Record<string, unknown>; plugins?: unknown[] }) => {
    const strict = factory(externalSchemas as never, {
      ...options,
      customOptions: { ...options.customOptions, removeAdditional: false, coerceTypes: false, allErrors: false },
    } as never) as (ctx: { httpPart?: string }) => unknown;
    const coercing = factory(externalSchemas as never, {
      ...options,
      customOptions: { ...options.customOptions, removeAdditional: false, coerceTypes: 'array', allErrors: false },
    } as never) as (ctx: { httpPart?: string }) => unknown;
    // Params, querystring and headers arrive as strings, so they keep type coercion; bodies are JSON and must type-check.
    return (ctx: { httpPart?: string }) => (ctx.httpPart === 'body' ? strict(ctx) : coercing(ctx));
  };
}

export async function createBaseApp(options: BaseAppOptions = {}): Promise<FastifyInstance> {
  const logger =
    options.logger ??
    pino({
      level: options.logLevel ?? 'info',
      // Never log credentials, whatever a plugin decides to log.
      redact: ['req.headers.authorization', 'req.headers["keel-signature"]', 'headers.authorization'],
    });

  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    trustProxy: options.trustProxy ?? false,
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && ID_RE.test(h) ? h : uuidv7();
    },
    schemaController: { compilersFactory: { buildValidator: buildValidatorFactory() as never } },
    ajv: { customOptions: { removeAdditional: false } },
    // Bodies with __proto__ / constructor.prototype are refused (400), not merged.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  }) as unknown as FastifyInstance;

  registerErrorHandler(app);

  // ---- ids and log bindings
  app.decorateRequest('correlationId', '');
  app.addHook('onRequest', async (req, reply) => {
    const c = req.headers['x-correlation-id'];
    req.correlationId = typeof c === 'string' && ID_RE.test(c) ? c : req.id;
    const tenantId = tenantIdOf(req);
    req.log = req.log.child(tenantId ? { tenantId, correlationId: req.correlationId } : { correlationId: req.correlationId });
    void reply.header('x-request-id', req.id);
    void reply.header('x-correlation-id', req.correlationId);
  });

  // ---- metrics
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  app.decorate('metrics', registry);
  const httpDuration = getOrCreateHistogram(registry, {
    name: 'keel_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  });
  app.addHook('onResponse', async (req, reply) => {
    httpDuration.observe(
      { method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  // ---- readiness
  const checks = new Map<string, ReadinessCheck>(Object.entries(options.readinessChecks ?? {}));
  const timeoutMs = options.readinessTimeoutMs ?? 2000;
  const readiness: ReadinessRegistry = {
    add: (name, check) => void checks.set(name, check),
    run: async () => {
      const results = await Promise.all(
        [...checks].map(async ([name, check]) => {
          let timer: NodeJS.Timeout | undefined;
          try {
            await Promise.race([
              Promise.resolve().then(check),
              new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
              }),
            ]);
            return [name, 'ok'] as const;
          } catch (e) {
            return [name, (e as Error).message || 'failed'] as const;
          } finally {
            clearTimeout(timer);
          }
        }),
      );
      return { ready: results.every(([, r]) => r === 'ok'), checks: Object.fromEntries(results) };
    },
  };
  app.decorate('readiness', readiness);

  // ---- OpenAPI: must be registered before any route so it sees them all.
  if (options.docs !== false) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: options.title ?? 'Keel',
          version: options.version ?? '0.1.0',
          description: options.description ?? 'Keel: a multi-tenant, event-sourced CQRS integration backbone',
        },
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', description: 'keel_<id>_<secret> API key, the platform admin key, or a JWT' },
          },
        },
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  }

  app.get(
    '/health',
    {
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } }, required: ['status'] } },
      },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/ready',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: every dependency check passes (503 otherwise)',
        response: {
          200: readyBodySchema,
          503: readyBodySchema,
        },
      },
    },
    async (_req, reply) => {
      const r = await readiness.run();
      return reply.status(r.ready ? 200 : 503).send({ status: r.ready ? 'ready' : 'not ready', checks: r.checks });
    },
  );
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });

  return app;
}

const readyBodySchema = {
  type: 'object',
  properties: {
    status: { type: 'string' },
    checks: { type: 'object', additionalProperties: { type: 'string' } },
  },
  required: ['status', 'checks'],
} as const;

function tenantIdOf(req: FastifyRequest): string | undefined {
  const p = req.params as Record<string, unknown> | undefined;
  const t = p?.tenantId;
  return typeof t === 'string' && ID_RE.test(t) ? t : undefined;
}

/** Registries refuse a second metric of the same name; mounting twice (tests, CLI) reuses it. */
export function getOrCreateHistogram<L extends string>(registry: Registry, config: HistogramConfiguration<L>): Histogram<L> {
  const existing = registry.getSingleMetric(config.name);
  if (existing) return existing as Histogram<L>;
  return new Histogram<L>({ ...config, registers: [registry] });
}

export function getOrCreateCounter<L extends string>(registry: Registry, config: CounterConfiguration<L>): Counter<L> {
  const existing = registry.getSingleMetric(config.name);
  if (existing) return existing as Counter<L>;
  return new Counter<L>({ ...config, registers: [registry] });
}

