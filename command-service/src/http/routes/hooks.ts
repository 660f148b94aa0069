import { createHash } from 'node:crypto';
import { HttpError, KeyDestroyedError, type Actor } from '@keel/shared-events';
import type { FastifyInstance } from 'fastify';
import { loadWritableTenant } from '../../app/handle-command.ts';
import { idempotentEventId, requestHash } from '../../app/idempotency.ts';
import { sourceDecider, type SourceState } from '../../domain/source.ts';
import { recordEvent, validateRecord } from '../../ingest/records.ts';
import { verifySignature } from '../../ingest/signature.ts';
import { errorSchema, paramsWith, uuid } from '../schemas.ts';
import type { CommandService } from '../service.ts';
import { sourceStream } from './sources.ts';

/**
 * Inbound webhooks: `POST /v1/hooks/:tenantId/:sourceId`, authenticated by the source's HMAC
 * secret over the raw body and a timestamp (Keel-Signature, the scheme of outbound webhooks).
 * A bad signature, an unknown or removed source, and a stale timestamp all answer 401 and store
 * nothing. The JSON body becomes a RecordIngested (receivedVia "webhook").
 *
 * Replays inside the 5-minute window are harmless: the event id derives from the signature (or
 * the Idempotency-Key), so the store keeps the first copy only.
 */
const invalidSignature = () => new HttpError('INVALID_SIGNATURE', 401, 'missing or invalid Keel-Signature for this source');

export async function hookRoutes(app: FastifyInstance, svc: CommandService): Promise<void> {
  // The signature covers the exact bytes: keep them raw, whatever the content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: svc.config.bodyLimitBytes }, (_req, body, done) => done(null, body));

  app.post<{ Params: { tenantId: string; sourceId: string } }>(
    '/v1/hooks/:tenantId/:sourceId',
    {
      bodyLimit: svc.config.bodyLimitBytes,
      config: { keelIdempotency: 'manual' },
      schema: {
        tags: ['inbound webhooks'],
        summary:
          'Inbound webhook (anyone holding the source\'s secret). Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>; older than 5 minutes → 401. The JSON object body is stored as a record',
        params: paramsWith({ sourceId: uuid }),
        headers: {
          type: 'object',
          properties: {
            'keel-signature': { type: 'string', maxLength: 2048 },
            'keel-entity-type': { type: 'string', description: 'entityType of the record (default "webhook")' },
            'keel-external-id': { type: 'string', description: 'externalId of the record (default: derived from the body and timestamp)' },
            'idempotency-key': { type: 'string', pattern: '^[\\x21-\\x7e]{1,255}$' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['eventId', 'globalPosition'],
            properties: { eventId: { type: 'string' }, streamId: { type: 'string' }, globalPosition: { type: 'integer' } },
          },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          410: errorSchema,
          413: errorSchema,
          415: errorSchema,
          422: errorSchema,
          429: errorSchema,
        },
      },
    },
    async (req, reply) => {
      const { tenantId, sourceId } = req.params;
      const wait = svc.limits.hooks.take(`hook:${tenantId}:${sourceId}`);
      if (wait) {
        svc.metrics.rateLimited.inc({ limit: 'hooks' });
        void reply.header('retry-after', String(wait));
        throw new HttpError('RATE_LIMITED', 429, `too many requests; retry in ${wait} s`, { retryAfterSeconds: wait });
      }
      const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);

      const events = await svc.store.readStream(sourceStream(tenantId, sourceId));
      const source = events.reduce<SourceState>((s, e) => sourceDecider.evolve(s, e as never), sourceDecider.initialState());
      if (source.status !== 'active') throw invalidSignature();
      let secret: string;
      try {
        secret = await svc.keyring.decryptField(tenantId, source.secret);
      } catch (e) {
        if (e instanceof KeyDestroyedError) throw invalidSignature(); // erased tenant
        throw e;
      }
      const check = verifySignature({
        header: req.headers['keel-signature'] as string | undefined,
        secret,
        rawBody: raw,
        nowSeconds: Math.floor(Date.now() / 1000),
        toleranceSeconds: svc.config.hookToleranceSeconds,
      });
      if (!check.ok) {
        req.log.warn({ sourceId, reason: check.reason }, 'inbound webhook refused');
        if (check.reason === 'expired')
          throw new HttpError('SIGNATURE_EXPIRED', 401, `the signature timestamp is more than ${svc.config.hookToleranceSeconds} s from now`);
        throw invalidSignature();
      }
      // Past this point the caller holds the secret.
      await loadWritableTenant(svc.store, tenantId);

      const type = (req.headers['content-type'] ?? '').toLowerCase();
      if (!/^application\/([a-z0-9.+-]*\+)?json(;|$)/.test(type))
        throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 415, 'inbound webhooks take a JSON object body (Content-Type: application/json)');
      let payload: unknown;
      try {
        payload = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        throw new HttpError('BAD_REQUEST', 400, `the body is not valid JSON: ${(e as Error).message}`);
      }

      const key = req.headers['idempotency-key'] as string | undefined;
      const fingerprint = key ? `key:${key}` : `sig:${check.timestamp}:${check.signature}`;
      const derived = createHash('sha256').update(`${check.timestamp}.`).update(raw).digest('hex').slice(0, 32);
      const result = validateRecord({
        source: source.name,
        entityType: (req.headers['keel-entity-type'] as string | undefined) ?? 'webhook',
        externalId: (req.headers['keel-external-id'] as string | undefined) ?? derived,
        payload,
      });
      if (!result.ok)
        throw new HttpError('VALIDATION_FAILED', 400, result.rejection.message, { code: result.rejection.code });

      const scope = `${tenantId}:hook:${sourceId}`;
      let eventAt = check.timestamp * 1000;
      if (key) {
        const begun = await svc.idempotency.begin(scope, key, requestHash([raw, String(req.headers['keel-entity-type'] ?? ''), String(req.headers['keel-external-id'] ?? '')]));
        if (begun.kind === 'mismatch') throw new HttpError('IDEMPOTENCY_KEY_REUSED', 422, 'this Idempotency-Key was used with another request body');
        if (begun.kind === 'inProgress') throw new HttpError('IDEMPOTENCY_KEY_IN_USE', 409, 'a request with this Idempotency-Key is still being processed');
        if (begun.kind === 'replay') return reply.status(begun.status).header('idempotent-replayed', 'true').type('application/json').send(begun.body);
        eventAt = begun.createdAt.getTime();
      }
      const actor: Actor = { kind: 'connector', id: `source:${sourceId}` };
      const { streamId, event } = recordEvent(result.record, {
        tenantId,
        actor,
        receivedVia: 'webhook',
        correlationId: req.correlationId,
        eventId: idempotentEventId(eventAt, scope, fingerprint, 0),
      });
      try {
        const r = await svc.store.appendToStream(streamId, [event]);
        svc.metrics.ingestRecords.inc({ outcome: 'accepted', via: 'webhook' });
        const body = JSON.stringify({ eventId: r.events[0]?.eventId ?? event.eventId, streamId, globalPosition: r.globalPosition });
        if (key) await svc.idempotency.complete(scope, key, { status: 200, body });
        return reply.status(200).type('application/json').send(body);
      } catch (e) {
        if (key) await svc.idempotency.release(scope, key).catch(() => undefined);
        throw e;
      }
    },
  );
}
