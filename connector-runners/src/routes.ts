import type { FastifyInstance } from 'fastify';
import {
  isUuid,
  NotFoundError,
  ValidationError,
  type AccessGuard,
  type EventStore,
  type RecordedEvent,
} from '@keel/shared-events';
import type pg from 'pg';
import type { Logger } from 'pino';
import { dryRunFlowRun, type DryRunDeps } from './flows/dry-run.ts';
import { runStream } from './flows/runner.ts';

/**
 * The runners' HTTP surface:
 *   GET  /v1/tenants/:tenantId/runs/:runId/events   the run's events as Server-Sent Events, live
 *   POST /v1/tenants/:tenantId/runs/:runId/dry-run  re-run against the recorded input, destinations captured
 */
export interface RouteDeps {
  store: EventStore;
  pool: pg.Pool;
  guard: AccessGuard;
  dryRun: DryRunDeps;
  logger: Logger;
  /** How often a live run log looks for new events. Default 250 ms. */
  ssePollMs?: number;
  /** Comment lines keep idle proxies from closing the stream. Default 15 s. */
  sseHeartbeatMs?: number;
  /** A run log stream ends after this long even if the run has not finished. Default 1 h. */
  sseMaxMs?: number;
}

const TERMINAL = new Set(['FlowRunCompleted', 'FlowRunFailed', 'FlowRunDeadLettered']);

const params = {
  type: 'object',
  properties: {
    tenantId: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$' },
    runId: { type: 'string', minLength: 1, maxLength: 64 },
  },
  required: ['tenantId', 'runId'],
  additionalProperties: false,
} as const;

const anyObject = { type: 'object', additionalProperties: true } as const;
const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

function checkRunId(runId: string): void {
  if (!isUuid(runId)) throw new ValidationError('runId must be a UUID', 'params.runId');
}

/** One SSE frame; the id is the event's stream revision so a reconnect (Last-Event-ID) resumes after it. */
export function sseFrame(e: RecordedEvent): string {
  const body = JSON.stringify({
    eventId: e.eventId,
    type: e.type,
    streamPosition: e.streamPosition,
    globalPosition: e.globalPosition,
    recordedAt: e.recordedAt.toISOString(),
    correlationId: e.correlationId,
    causationId: e.causationId,
    data: e.data,
  });
  return `id: ${e.streamPosition}\nevent: ${e.type}\ndata: ${body}\n\n`;
}

export async function registerRunnerRoutes(app: FastifyInstance, deps: RouteDeps): Promise<void> {
  const pollMs = deps.ssePollMs ?? 250;
  const heartbeatMs = deps.sseHeartbeatMs ?? 15_000;
  const maxMs = deps.sseMaxMs ?? 3_600_000;

  async function runExists(tenantId: string, runId: string): Promise<boolean> {
    const r = await deps.pool.query('select 1 from keel_runner_flow_runs where run_id = $1 and tenant_id = $2', [
      runId,
      tenantId,
    ]);
    if (r.rowCount) return true;
    return (await deps.store.readStream(runStream(tenantId, runId), { maxCount: 1 })).length > 0;
  }

  app.get<{ Params: { tenantId: string; runId: string }; Headers: { 'last-event-id'?: string } }>(
    '/v1/tenants/:tenantId/runs/:runId/events',
    {
      onRequest: deps.guard.require('dashboard:read'),
      schema: {
        tags: ['runs'],
        summary:
          'Live run log: the run events as Server-Sent Events (text/event-stream), ending after the run finishes',
        description:
          'Each frame is `id: <stream revision>`, `event: <type>`, `data: <JSON event>`. Send `Last-Event-ID` to resume after a revision. ' +
          'Steps carry request, response and payload summaries (bodies only when the flow keeps them, redacted).',
        security: [{ bearerAuth: [] }],
        params,
        headers: { type: 'object', properties: { 'last-event-id': { type: 'string', pattern: '^[0-9]{1,10}$' } } },
        response: { 400: errorSchema, 401: errorSchema, 403: errorSchema, 404: errorSchema },
      },
    },
    async (req, reply) => {
      const { tenantId, runId } = req.params;
      checkRunId(runId);
      if (!(await runExists(tenantId, runId))) throw new NotFoundError(`run ${runId} not found`, { runId });
      const last = req.headers['last-event-id'];
      let next = last !== undefined ? Number(last) + 1 : 0;
      const stream = runStream(tenantId, runId);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
        'x-request-id': req.id,
      });
      res.write(`retry: ${Math.max(1000, pollMs * 4)}\n\n`);
      let closed = false;
      req.raw.on('close', () => {
        closed = true;
      });
      const startedAt = Date.now();
      let lastWrite = Date.now();
      try {
        while (!closed && Date.now() - startedAt < maxMs) {
          const events = await deps.store.readStream(stream, { fromRevision: next, maxCount: 500 });
          let done = false;
          for (const e of events) {
            res.write(sseFrame(e));
            next = e.streamPosition + 1;
            if (TERMINAL.has(e.type)) done = true;
          }
          if (events.length) lastWrite = Date.now();
          if (done) {
            res.write(`event: end\ndata: {}\n\n`);
            break;
          }
          if (events.length === 500) continue;
          if (Date.now() - lastWrite >= heartbeatMs) {
            res.write(': keep-alive\n\n');
            lastWrite = Date.now();
          }
          await new Promise((r) => setTimeout(r, pollMs));
        }
      } catch (err) {
        req.log.error({ err: (err as Error).message, runId }, 'run log stream failed');
        if (!closed)
          res.write(`event: error\ndata: ${JSON.stringify({ message: 'the run log could not be read' })}\n\n`);
      } finally {
        res.end();
      }
    },
  );

  app.post<{ Params: { tenantId: string; runId: string }; Body: { version?: number } | null | undefined }>(
    '/v1/tenants/:tenantId/runs/:runId/dry-run',
    {
      onRequest: deps.guard.require('stream:read'),
      schema: {
        tags: ['runs'],
        summary:
          'Re-run a recorded flow run against its recorded input, with destination side effects captured instead of performed, and compare with the original',
        description:
          'Nothing is sent and nothing is written: HTTP requests and database upserts are captured (credentials redacted). ' +
          '`version` runs another version of the flow against the same input (default: the version the run used).',
        security: [{ bearerAuth: [] }],
        params,
        body: {
          anyOf: [
            { type: 'object', properties: { version: { type: 'integer', minimum: 1 } }, additionalProperties: false },
            { type: 'null' },
          ],
        },
        response: {
          200: {
            type: 'object',
            properties: {
              runId: { type: 'string' },
              flowId: { type: 'string' },
              recordedVersion: { type: 'integer' },
              version: { type: 'integer' },
              triggerEventId: { type: 'string' },
              original: anyObject,
              dryRun: anyObject,
              differences: { type: 'array', items: anyObject },
              same: { type: 'boolean' },
            },
            required: ['runId', 'flowId', 'version', 'original', 'dryRun', 'differences', 'same'],
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          404: errorSchema,
        },
      },
    },
    async (req) => {
      const { tenantId, runId } = req.params;
      checkRunId(runId);
      const version = req.body?.version;
      const result = await dryRunFlowRun(deps.dryRun, tenantId, runId, version !== undefined ? { version } : {});
      req.log.info({ runId, version: result.version, differences: result.differences.length }, 'dry run');
      return result;
    },
  );
}
