import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { createBaseApp, HttpError } from '../src/index.ts';

let app: FastifyInstance;
const lines: Record<string, unknown>[] = [];
let dbUp = true;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  app = await createBaseApp({
    logger: pino({ level: 'info' }, sink),
    bodyLimit: 1024,
    defaultMetrics: false,
    readinessChecks: { database: () => { if (!dbUp) throw new Error('connection refused'); } },
  });
  await app.register(async (scope) => {
    scope.post<{ Params: { tenantId: string }; Body: { name: string } }>(
      '/v1/tenants/:tenantId/things',
      {
        schema: {
          summary: 'make a thing',
          params: { type: 'object', properties: { tenantId: { type: 'string' } } },
          body: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string' }, n: { type: 'integer' } } },
          response: { 201: { type: 'object', properties: { name: { type: 'string' } } } },
        },
      },
      async (req, reply) => {
        req.log.info('made a thing');
        if (req.body.name === 'boom') throw new Error('kaboom');
        if (req.body.name === 'teapot') throw new HttpError('TEAPOT', 418, 'short and stout');
        return reply.status(201).send({ name: req.body.name });
      },
    );
  });
  app.readiness.add('late', async () => undefined);
  await app.ready();
});
afterAll(async () => app?.close());

describe('createBaseApp', () => {
  it('gives every request an id and a correlation id, echoes them, and binds tenantId and correlationId to the logs', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/tenants/t-42/things', payload: { name: 'a' }, headers: { 'x-correlation-id': 'corr-1' } });
    expect(r.statusCode).toBe(201);
    expect(r.headers['x-correlation-id']).toBe('corr-1');
    const reqId = r.headers['x-request-id'] as string;
    expect(reqId).toMatch(/^[0-9a-f-]{36}$/);
    const mine = lines.filter((l) => l.reqId === reqId && l.msg === 'made a thing');
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ tenantId: 't-42', correlationId: 'corr-1' });
    const own = await app.inject({ method: 'POST', url: '/v1/tenants/t/things', payload: { name: 'a' }, headers: { 'x-request-id': 'my-req-1' } });
    expect(own.headers['x-request-id']).toBe('my-req-1');
    expect(own.headers['x-correlation-id']).toBe('my-req-1');
    const hostile = await app.inject({ method: 'POST', url: '/v1/tenants/t/things', payload: { name: 'a' }, headers: { 'x-request-id': 'a b\nc', 'x-correlation-id': '<script>' } });
    expect(hostile.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(hostile.headers['x-correlation-id']).toBe(hostile.headers['x-request-id']);
    expect(JSON.stringify(lines)).not.toContain('authorization');
  });

  it('answers every failure with {error: {code, message, details}}', async () => {
    const cases: [Record<string, unknown> | string, number, string][] = [
      [{ name: 'a', extra: 1 }, 400, 'VALIDATION_FAILED'],
      [{ name: 'a', n: '5' }, 400, 'VALIDATION_FAILED'],
      ['{bad', 400, 'BAD_REQUEST'],
      [{ name: 'x'.repeat(2000) }, 413, 'PAYLOAD_TOO_LARGE'],
      [{ name: 'teapot' }, 418, 'TEAPOT'],
      [{ name: 'boom' }, 500, 'INTERNAL'],
    ];
    for (const [payload, status, code] of cases) {
      const r = await app.inject({ method: 'POST', url: '/v1/tenants/t/things', payload, headers: { 'content-type': 'application/json' } });
      expect([code, r.statusCode]).toEqual([code, status]);
      expect(r.json().error.code).toBe(code);
    }
    const boom = await app.inject({ method: 'POST', url: '/v1/tenants/t/things', payload: { name: 'boom' } });
    expect(boom.json().error.message).toBe('internal error'); // no internals leak
    expect((await app.inject('/nope')).json()).toEqual({ error: { code: 'NOT_FOUND', message: 'no route GET /nope' } });
  });

  it('serves /health, /ready with pluggable checks (503 when one fails), /metrics, and OpenAPI at /docs', async () => {
    expect((await app.inject('/health')).json()).toEqual({ status: 'ok' });
    expect((await app.inject('/ready')).json()).toEqual({ status: 'ready', checks: { database: 'ok', late: 'ok' } });
    dbUp = false;
    const down = await app.inject('/ready');
    expect(down.statusCode).toBe(503);
    expect(down.json()).toEqual({ status: 'not ready', checks: { database: 'connection refused', late: 'ok' } });
    dbUp = true;

    const metrics = await app.inject('/metrics');
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.body).toMatch(/keel_http_request_duration_seconds_count\{method="POST",route="\/v1\/tenants\/:tenantId\/things",status_code="201"\} \d+/);

    const doc = (await app.inject('/docs/json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    const op = doc.paths['/v1/tenants/{tenantId}/things'].post;
    expect(op.summary).toBe('make a thing');
    expect(op.requestBody.content['application/json'].schema.required).toEqual(['name']);
    expect((await app.inject('/docs')).statusCode).toBeLessThan(400);
  });
});
