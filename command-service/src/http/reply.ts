import { principalOf, type Actor } from '@keel/shared-events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CommandResult } from '../app/handle-command.ts';
import { parseIfMatch } from '../app/handle-command.ts';

export function actorOf(req: FastifyRequest): Actor {
  return principalOf(req).actor;
}

export function ifMatchOf(req: FastifyRequest): number | undefined {
  return parseIfMatch(req.headers['if-match']);
}

/** Answers a write: the body plus `revision` and `globalPosition`, and the revision as ETag. */
export function sendWrite<B extends Record<string, unknown>>(
  reply: FastifyReply,
  status: number,
  body: B,
  result: Pick<CommandResult<unknown>, 'revision' | 'globalPosition'>,
) {
  void reply.header('etag', `"${result.revision}"`);
  return reply.status(status).send({ ...body, revision: result.revision, globalPosition: result.globalPosition });
}

/** Common command fields from the request. */
export function commandMeta(req: FastifyRequest, tenantId: string) {
  return { tenantId, actor: actorOf(req), correlationId: req.correlationId, ifMatch: ifMatchOf(req) };
}
