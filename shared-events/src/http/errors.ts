import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { KeelError } from '../errors.ts';

/**
 * The one error handler: every failure answers `{error: {code, message, details}}` with the
 * fitting status. Services register it once (`registerErrorHandler(app)`), and may extend
 * the code → status table with `statusByCode` for their own KeelError subclasses.
 */
export const statusByCode: Record<string, number> = {
  VALIDATION_FAILED: 400,
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONCURRENCY_CONFLICT: 409,
  STREAM_DELETED: 410,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  IDEMPOTENCY_KEY_REUSED: 422,
  RULE_VIOLATED: 422,
  RATE_LIMITED: 429,
  UNAVAILABLE: 503,
};

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return details === undefined ? { error: { code, message } } : { error: { code, message, details } };
}

/** A KeelError with an explicit HTTP code, for edge failures (auth, rate limits, ...). */
export class HttpError extends KeelError {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    details?: unknown,
  ) {
    super(message, details);
  }
}

export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | KeelError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) {
      return reply.status(err.statusCode).send(errorBody(err.code, err.message, err.details));
    }
    if (err instanceof KeelError) {
      const status = statusByCode[err.code] ?? 500;
      return reply.status(status).send(errorBody(err.code, err.message, err.details));
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const first = fe.validation[0];
      return reply.status(400).send(
        errorBody('VALIDATION_FAILED', fe.message, {
          field: first ? `${fe.validationContext ?? ''}${first.instancePath}`.replace(/\//g, '.') || undefined : undefined,
          errors: fe.validation.map((v) => ({ path: v.instancePath, message: v.message, params: v.params })),
        }),
      );
    }
    const code = fe.code;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send(errorBody('PAYLOAD_TOO_LARGE', fe.message));
    if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return reply.status(415).send(errorBody('UNSUPPORTED_MEDIA_TYPE', fe.message));
    if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || code === 'FST_ERR_CTP_INVALID_JSON_BODY' || fe.statusCode === 400 || err instanceof SyntaxError)
      return reply.status(400).send(errorBody('BAD_REQUEST', fe.message));
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500)
      return reply.status(fe.statusCode).send(errorBody(code ?? 'BAD_REQUEST', fe.message));
    req.log.error({ err }, 'unhandled error');
    return reply.status(500).send(errorBody('INTERNAL', 'internal error'));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
}
