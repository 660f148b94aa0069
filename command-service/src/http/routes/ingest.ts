import { createHash, type Hash } from 'node:crypto';
import { HttpError, principalOf } from '@keel/shared-events';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { loadWritableTenant } from '../../app/handle-command.ts';
import { ndjsonItems, runIngest, type IngestItem, type IngestJob, type IngestOutcome } from '../../ingest/run.ts';
import { security, tenantParams, writeErrors, writeHeaders } from '../schemas.ts';
import { limiterKey, type CommandService } from '../service.ts';

/**
 * Batch ingest. NDJSON is parsed line by line as the body streams in and appended in large
 * batches (one store transaction each, `appendBatch`), the next batch being parsed while the
 * previous one commits; the body is never held whole. A JSON array is parsed by Fastify first
 * (bounded by the same byte limit). Each record is validated alone: invalid ones are reported
 * by index, valid ones stored.
 *
 * With an Idempotency-Key, event ids derive from the key and the record index, so a retry of a
 * request that failed halfway appends only what is missing, and a completed one is answered
 * from the first answer.
 *
 * NDJSON bodies go to an ingest thread when the service has them (ingest/threads.ts); JSON arrays,
 * already parsed by Fastify, and services without threads run the same pipeline here.
 */

const outcomeSchema = {
  type: 'object',
  required: ['accepted', 'rejected', 'rejectedCount', 'globalPosition'],
  properties: {
    accepted: { type: 'integer', description: 'records stored' },
    rejected: {
      type: 'array',
      description: 'invalid records by 0-based index (among non-blank lines); the first 1000 are listed',
      items: {
        type: 'object',
        required: ['index', 'code', 'message'],
        properties: { index: { type: 'integer' }, code: { type: 'string' }, message: { type: 'string' } },
      },
    },
    rejectedCount: { type: 'integer' },
    globalPosition: {
      type: 'integer',
      description: 'position of the last stored record; pass as minPosition to the read side',
    },
  },
} as const;

const recordSchema = {
  type: 'object',
  required: ['source', 'entityType', 'externalId', 'payload'],
  properties: {
    source: { type: 'string', description: '1-100 of A-Z a-z 0-9 . _ : -' },
    entityType: { type: 'string', description: 'a letter, then up to 63 of A-Z a-z 0-9 _ .' },
    externalId: { type: 'string', description: '1-200 of A-Z a-z 0-9 . _ : @ + = ~ -' },
    occurredAt: { type: 'string', format: 'date-time' },
    payload: { type: 'object' },
  },
} as const;

async function* tap(src: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of src) {
    hash.update(chunk);
    yield chunk;
  }
}

async function* itemsOf(req: FastifyRequest, svc: CommandService, hash: Hash): AsyncGenerator<IngestItem> {
  if (isNdjson(req)) {
    yield* ndjsonItems(tap(req.body as AsyncIterable<Buffer>, hash), svc.config.ingest);
    return;
  }
  const body = req.body as unknown[];
  hash.update(JSON.stringify(body));
  for (const value of body) yield { kind: 'value', value };
}

function isNdjson(req: FastifyRequest): boolean {
  return (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/x-ndjson');
}

/** Runs one request's ingest, on an ingest thread for NDJSON when the service has them. */
async function ingest(req: FastifyRequest, svc: CommandService, hash: Hash, job: IngestJob): Promise<IngestOutcome> {
  if (svc.ingestThreads && isNdjson(req)) {
    const { outcome, batches } = await svc.ingestThreads.run(job, tap(req.body as AsyncIterable<Buffer>, hash));
    // what the instrumented store records for appends made on this thread
    for (const b of batches) {
      svc.metrics.appendDuration.observe({ kind: 'batch' }, b.seconds);
      svc.metrics.eventsAppended.inc({ type: 'RecordIngested' }, b.appended);
    }
    return outcome;
  }
  return runIngest({ store: svc.store, ingest: svc.config.ingest }, itemsOf(req, svc, hash), job);
}

export async function ingestRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  // The stream itself: ingest reads it line by line.
  app.addContentTypeParser('application/x-ndjson', (_req, payload, done) => done(null, payload));
  // Answered before the body was read to its end (413 cut-off, auth refusal, store failure): the
  // rest of the body is still on the wire, so the connection cannot carry another request.
  app.addHook('onSend', async (req, reply, payload) => {
    if (!req.raw.complete) void reply.header('connection', 'close');
    return payload;
  });

  const contentLengthCheck = async (req: FastifyRequest) => {
    const len = Number(req.headers['content-length'] ?? 0);
    if (len > svc.config.ingest.maxBytes)
      throw new HttpError('PAYLOAD_TOO_LARGE', 413, `the body exceeds ${svc.config.ingest.maxBytes} bytes`, {
        limit: svc.config.ingest.maxBytes,
      });
  };

  app.post<{ Params: { tenantId: string } }>(
    '/v1/tenants/:tenantId/ingest',
    {
      onRequest: [...svc.protect('record:ingest', { ingest: true }), contentLengthCheck],
      bodyLimit: svc.config.ingest.maxBytes,
      config: { keelIdempotency: 'manual' },
      schema: {
        tags: ['ingest'],
        summary:
          'Batch ingest (operator and up): NDJSON (streamed) or a JSON array of {source, entityType, externalId, occurredAt?, payload}; each valid record becomes a RecordIngested event on record-<tenant>-<entityType>-<externalId>',
        security,
        params: tenantParams,
        headers: writeHeaders,
        body: {
          content: {
            'application/json': { schema: { type: 'array', items: recordSchema } },
            'application/x-ndjson': { schema: { description: 'one record object per line' } },
          },
        },
        response: {
          200: outcomeSchema,
          ...writeErrors,
        },
      },
    },
    async (req: FastifyRequest<{ Params: { tenantId: string } }>, reply: FastifyReply) => {
      const { tenantId } = req.params;
      const principal = principalOf(req);
      await loadWritableTenant(svc.store, tenantId);
      const key = req.headers['idempotency-key'] as string | undefined;
      const scope = `${tenantId}:ingest`;
      const hash = createHash('sha256');
      let outcome: IngestOutcome;

      if (key) {
        const begun = await svc.idempotency.begin(scope, key, null);
        if (begun.kind === 'inProgress')
          throw new HttpError(
            'IDEMPOTENCY_KEY_IN_USE',
            409,
            'a request with this Idempotency-Key is still being processed',
          );
        if (begun.kind === 'replay') {
          for await (const _ of itemsOf(req, svc, hash)); // read the body only to compare it
          if (hash.digest('hex') !== begun.requestHash)
            throw new HttpError(
              'IDEMPOTENCY_KEY_REUSED',
              422,
              'this Idempotency-Key was used with another request body',
            );
          return reply
            .status(begun.status)
            .header('idempotent-replayed', 'true')
            .type('application/json')
            .send(begun.body);
        }
        if (begun.kind === 'mismatch')
          throw new HttpError('IDEMPOTENCY_KEY_REUSED', 422, 'this Idempotency-Key was used with another request body');
        const at = begun.createdAt.getTime();
        try {
          outcome = await ingest(req, svc, hash, {
            tenantId,
            actor: principal.actor,
            correlationId: req.correlationId,
            idempotency: { at, scope, key },
          });
        } catch (e) {
          await svc.idempotency.release(scope, key).catch(() => undefined);
          throw e;
        }
      } else {
        outcome = await ingest(req, svc, hash, { tenantId, actor: principal.actor, correlationId: req.correlationId });
      }

      svc.limits.records.charge(limiterKey(principal), outcome.accepted + outcome.rejectedCount);
      svc.metrics.ingestRecords.inc({ outcome: 'accepted', via: 'api' }, outcome.accepted);
      svc.metrics.ingestRecords.inc({ outcome: 'rejected', via: 'api' }, outcome.rejectedCount);
      req.log.info({ accepted: outcome.accepted, rejected: outcome.rejectedCount }, 'ingest');

      let status = 200;
      let body: unknown = outcome;
      if (outcome.accepted === 0) {
        status = 400;
        body = {
          error: {
            code: outcome.rejectedCount ? 'VALIDATION_FAILED' : 'BAD_REQUEST',
            message: outcome.rejectedCount ? 'no record was valid; nothing was stored' : 'the body holds no records',
            details: { rejected: outcome.rejected, rejectedCount: outcome.rejectedCount },
          },
        };
      }
      if (key) {
        if (status === 200) {
          const text = JSON.stringify(body);
          await svc.idempotency.complete(scope, key, { status, body: text, requestHash: hash.digest('hex') });
          return reply.status(status).type('application/json').send(text);
        }
        await svc.idempotency.release(scope, key);
      }
      return reply.status(status).send(body);
    },
  );
}
