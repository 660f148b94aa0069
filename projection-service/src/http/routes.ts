import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AccessGuard, Authenticator, KeelRuntime } from '@keel/shared-events';
import { HttpError, parseStreamName } from '@keel/shared-events';
import { nextAuditCursor, parseAuditExport, parseAuditPage } from '../audit/filters.ts';
import { queryAuditPage, streamAuditExport } from '../audit/query.ts';
import { CSV_HEADER, toAuditItem } from '../audit/row.ts';
import { verifyTenantChain } from '../audit/verify.ts';
import type { ProjectionConfig } from '../config.ts';
import {
  parseDeliveriesQuery,
  parseFlowRunsQuery,
  parseIngestRatesQuery,
  queryConnectors,
  queryDeliveries,
  queryFlowRuns,
  queryIngestRates,
  queryOverview,
  queryWebhooks,
} from '../dashboard/query.ts';
import { projectorGroup } from '../db/schema.ts';
import type { ProjectionName } from '../db/schema.ts';
import { projectionLag } from '../projectors.ts';
import { createPositionWaiter } from '../read/min-position.ts';
import { rejectUnknown, single } from '../read/params.ts';
import type { Query } from '../read/params.ts';
import { RebuildBusyError, UnknownProjectionError, rebuildProjection, rebuildStatus } from '../rebuild/rebuild.ts';
import type { RebuildProgress } from '../rebuild/rebuild.ts';
import { foldStream, parseReplayPoint, streamHistory, toReplayEvent } from '../replay/fold.ts';
import * as S from './schemas.ts';

/**
 * The read side's routes (API.md "Read side"), as one encapsulated Fastify plugin. Every tenant
 * route goes through the shared access guard (authentication, tenant, role permission,
 * cross-tenant → 404 + AccessDenied); every query runs as the RLS reader of that tenant.
 */
export interface RoutesContext {
  runtime: KeelRuntime;
  config: ProjectionConfig;
  guard: AccessGuard;
  authenticator: Authenticator;
}

const tenantParams = {
  type: 'object',
  properties: { tenantId: { type: 'string', minLength: 1, maxLength: 100 } },
  required: ['tenantId'],
} as const;

export async function projectionRoutes(app: FastifyInstance, ctx: RoutesContext): Promise<void> {
  const { runtime, config, guard } = ctx;
  const pool = runtime.pool;
  const waiter = createPositionWaiter(pool, { maxWaitMs: config.minPositionWaitMs });
  const isKnownType = (t: string): boolean => {
    try {
      runtime.registry.latestVersion(t);
      return true;
    } catch {
      return false;
    }
  };
  const tenantOf = (req: FastifyRequest): string => (req.params as { tenantId: string }).tenantId;
  const waitFor = async (projection: ProjectionName, req: FastifyRequest, minPosition: number | undefined) => {
    if (minPosition !== undefined) await waiter.waitFor(projectorGroup[projection], tenantOf(req), minPosition);
  };

  // ---------------------------------------------------------------------------------- audit
  app.get(
    '/v1/tenants/:tenantId/audit',
    {
      onRequest: guard.require('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'The audit trail, newest first, keyset-paginated',
        description:
          'Filters: from/to (store time, ISO-8601; from inclusive, to exclusive), actor (`<id>` or `<kind>:<id>`), ' +
          'type (event type or comma-separated list), streamId, correlationId. limit default 50, capped at 1000. ' +
          'cursor = nextCursor of the previous page (bound to the same filters). minPosition waits (bounded) for the projection.',
        security: [{ bearerAuth: [] }],
        params: tenantParams,
        querystring: S.auditPageQuery,
        response: { 200: S.auditPage },
      },
    },
    async (req) => {
      const tenantId = tenantOf(req);
      const q = parseAuditPage(req.query as Query, { tenantId, isKnownType });
      await waitFor('audit', req, q.minPosition);
      const { rows, next } = await queryAuditPage(pool, tenantId, q.filters, q.limit, q.before);
      return { items: rows.map(toAuditItem), nextCursor: next ? nextAuditCursor(next, q.fingerprint) : null };
    },
  );

  app.get(
    '/v1/tenants/:tenantId/audit/export',
    {
      onRequest: guard.require('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'The audit trail (same filters), streamed as NDJSON or CSV, any size, constant memory',
        security: [{ bearerAuth: [] }],
        params: tenantParams,
        querystring: S.auditExportQuery,
      },
    },
    async (req, reply) => {
      const tenantId = tenantOf(req);
      const q = parseAuditExport(req.query as Query, { tenantId, isKnownType });
      await waitFor('audit', req, q.minPosition);
      const csv = q.format === 'csv';
      async function* lines(): AsyncGenerator<string> {
        if (csv) yield CSV_HEADER;
        yield* streamAuditExport(pool, tenantId, q.filters, q.format);
      }
      req.log.info({ format: q.format }, 'audit export started');
      return reply
        .type(csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="audit-${tenantId}.${csv ? 'csv' : 'ndjson'}"`)
        .send(Readable.from(lines(), { objectMode: false }));
    },
  );

  app.get(
    '/v1/tenants/:tenantId/audit/verify',
    {
      onRequest: guard.require('audit:read'),
      schema: {
        tags: ['audit'],
        summary: "Recomputes the tenant's hash chain and checks the signed checkpoints",
        security: [{ bearerAuth: [] }],
        params: tenantParams,
        querystring: S.minPositionQuery,
        response: { 200: S.verifyResult },
      },
    },
    async (req) => {
      const q = req.query as Query;
      rejectUnknown(q, ['minPosition']);
      const { minPosition } = S.parseMinPosition(q);
      await waitFor('audit', req, minPosition);
      return verifyTenantChain(pool, tenantOf(req), config.keyring);
    },
  );

  // ------------------------------------------------------------------------- replay debugging
  const streamParams = {
    type: 'object',
    properties: {
      tenantId: tenantParams.properties.tenantId,
      streamId: { type: 'string', minLength: 1, maxLength: 400 },
    },
    required: ['tenantId', 'streamId'],
  } as const;
  const streamOf = (req: FastifyRequest): string => {
    const { tenantId, streamId } = req.params as { tenantId: string; streamId: string };
    // A stream of another tenant is invisible (404), like a stream that does not exist.
    if (parseStreamName(streamId)?.tenantId !== tenantId) throw new HttpError('NOT_FOUND', 404, 'stream not found');
    return streamId;
  };

  app.get(
    '/v1/tenants/:tenantId/streams/:streamId',
    {
      onRequest: guard.require('stream:read'),
      schema: {
        tags: ['replay'],
        summary: "A stream's state folded up to a point, with its events",
        description:
          'at = a revision (0-based, inclusive) or an ISO-8601 instant (events recorded at or before it); default: the end.',
        security: [{ bearerAuth: [] }],
        params: streamParams,
        querystring: S.atQuery,
        response: { 200: S.streamState },
      },
    },
    async (req) => {
      const streamId = streamOf(req);
      const q = req.query as Query;
      rejectUnknown(q, ['at']);
      const at = parseReplayPoint(single(q, 'at'));
      if (at === 'invalid')
        throw new HttpError('VALIDATION_FAILED', 400, 'at must be a revision (0, 1, ...) or an ISO-8601 instant', {
          field: 'at',
        });
      const events = await runtime.store.readStream(streamId, {
        ...(at && 'revision' in at ? { toRevision: at.revision } : {}),
        ...(at && 'time' in at ? { upTo: at.time } : {}),
      });
      if (events.length === 0) {
        const meta = await runtime.store.getStreamMetadata(streamId);
        if (meta.revision < 0) throw new HttpError('NOT_FOUND', 404, 'stream not found');
      }
      const last = events[events.length - 1];
      return {
        streamId,
        at: at ? ('revision' in at ? { revision: at.revision } : { time: at.time.toISOString() }) : null,
        revision: last ? last.streamPosition : -1,
        state: foldStream(streamId, events),
        events: events.map(toReplayEvent),
      };
    },
  );

  app.get(
    '/v1/tenants/:tenantId/streams/:streamId/history',
    {
      onRequest: guard.require('stream:read'),
      schema: {
        tags: ['replay'],
        summary: 'Each event of a stream with the state after it and what it changed',
        security: [{ bearerAuth: [] }],
        params: streamParams,
        response: { 200: S.streamHistory },
      },
    },
    async (req) => {
      const streamId = streamOf(req);
      rejectUnknown(req.query as Query, []);
      const events = await runtime.store.readStream(streamId);
      if (events.length === 0) throw new HttpError('NOT_FOUND', 404, 'stream not found');
      return { streamId, revision: events[events.length - 1]!.streamPosition, steps: streamHistory(streamId, events) };
    },
  );

  // -------------------------------------------------------------------------------- dashboard
  const dashboard = (
    path: string,
    summary: string,
    querystring: object,
    response: object,
    handler: (req: FastifyRequest) => Promise<unknown>,
  ) =>
    app.get(
      `/v1/tenants/:tenantId/dashboard${path}`,
      {
        onRequest: guard.require('dashboard:read'),
        schema: {
          tags: ['dashboard'],
          summary,
          security: [{ bearerAuth: [] }],
          params: tenantParams,
          querystring,
          response: { 200: response },
        },
      },
      handler,
    );

  // Routes whose only parameter is minPosition: wait for the dashboard, then load the tenant's view.
  const simpleDashboard = (path: string, summary: string, reply: object, load: (db: typeof pool, tenantId: string) => Promise<unknown>) =>
    dashboard(path, summary, S.minPositionQuery, reply, async (req) => {
      const q = req.query as Query;
      rejectUnknown(q, ['minPosition']);
      await waitFor('dashboard', req, S.parseMinPosition(q).minPosition);
      return load(pool, tenantOf(req));
    });

  simpleDashboard('', 'Overview: flow runs by status, connector health, deliveries, event counts', S.overview, queryOverview);
  dashboard(
    '/flow-runs',
    'Flow runs, newest first: status, durations, step counts, last error',
    S.flowRunsQuery,
    S.flowRunsPage,
    async (req) => {
      const q = parseFlowRunsQuery(req.query as Query);
      await waitFor('dashboard', req, q.minPosition);
      return queryFlowRuns(pool, tenantOf(req), q);
    },
  );
  simpleDashboard('/connectors', 'Connector health: successes, failures, last error, circuit state', S.connectors, queryConnectors);
  simpleDashboard('/webhooks', 'Webhook endpoints with deliveries pending, succeeded, failed, dead-lettered', S.webhooks, queryWebhooks);
  dashboard(
    '/webhooks/deliveries',
    'Webhook deliveries, newest first',
    S.deliveriesQuery,
    S.deliveriesPage,
    async (req) => {
      const q = parseDeliveriesQuery(req.query as Query);
      await waitFor('dashboard', req, q.minPosition);
      return queryDeliveries(pool, tenantOf(req), q);
    },
  );
  dashboard(
    '/ingest-rates',
    'Events per hour and per event type (default: the last 24 hours)',
    S.ingestRatesQuery,
    S.ingestRates,
    async (req) => {
      const q = parseIngestRatesQuery(req.query as Query, isKnownType);
      await waitFor('dashboard', req, q.minPosition);
      return queryIngestRates(pool, tenantOf(req), q);
    },
  );

  // ------------------------------------------------------------------------------------ admin
  const platformAdmin = async (req: FastifyRequest) => {
    const principal = await ctx.authenticator.authenticate(req.headers.authorization);
    if (principal.kind !== 'platformAdmin')
      throw new HttpError('FORBIDDEN', 403, 'projection administration needs the platform admin key');
  };
  const running = new Map<string, { progress?: RebuildProgress; error?: string }>();

  app.get(
    '/v1/admin/projections',
    {
      onRequest: platformAdmin,
      schema: {
        tags: ['admin'],
        summary: 'Projections: position, lag, rebuilds',
        security: [{ bearerAuth: [] }],
        response: { 200: S.projectionsStatus },
      },
    },
    async () => {
      const lag = await projectionLag(runtime);
      const rebuilds = await rebuildStatus(pool);
      return {
        items: Object.entries(lag).map(([projection, v]) => ({
          projection,
          ...v,
          rebuild: rebuilds.find((r) => r.projection === projection) ?? null,
          progress: running.get(projection)?.progress ?? null,
        })),
      };
    },
  );

  app.post(
    '/v1/admin/projections/:name/rebuild',
    {
      onRequest: platformAdmin,
      schema: {
        tags: ['admin'],
        summary:
          'Rebuilds a projection from position 0 into shadow tables, then swaps them in (202; poll GET /v1/admin/projections)',
        security: [{ bearerAuth: [] }],
        params: { type: 'object', properties: { name: { type: 'string', maxLength: 50 } }, required: ['name'] },
        response: { 202: S.rebuildAccepted },
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      if (name !== 'audit' && name !== 'dashboard') throw new UnknownProjectionError(name);
      if (running.has(name)) throw new RebuildBusyError(name);
      const state: { progress?: RebuildProgress; error?: string } = {};
      running.set(name, state);
      // Runs in the background; the route answers at once. Progress shows in GET /v1/admin/projections.
      void rebuildProjection(runtime, name, {
        onProgress: (p) => (state.progress = p),
        indexMemoryMB: config.rebuildIndexMemoryMB,
      })
        .catch((err: unknown) => req.log.error({ err, projection: name }, 'rebuild failed'))
        .finally(() => running.delete(name));
      return reply.status(202).send({ projection: name, status: 'running' });
    },
  );
}
