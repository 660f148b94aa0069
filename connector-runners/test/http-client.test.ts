import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { createHttpClient, headerValue, threadHttpClient } from '../src/http/client.ts';
import { parseRetryAfter } from '../src/retry/backoff.ts';
import { answer, closeConnection, hang, slow, startServer, type TestServer } from './servers.ts';

// Both forms of the client, the in-thread one and the one on its own worker thread, must behave the same.
describe.each([
  ['in this thread', createHttpClient],
  ['on a worker thread', threadHttpClient],
])('HTTP delivery client (%s) against real local servers', (_name, createClient) => {
  const client = createClient({ connectionsPerOrigin: 8 });
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await client.close();
    await server.close();
  });

  it('a 2xx answer: status, captured body prefix, sizes', async () => {
    server.behave(answer(201, '{"ok":true,"padding":"xxxxxxxxxxxxxxxx"}', { 'content-type': 'application/json' }));
    const r = await client.send({
      method: 'POST',
      url: `${server.url}/hook`,
      headers: { 'content-type': 'application/json', 'x-a': '1' },
      body: '{"n":1}',
      timeoutMs: 5000,
      captureBytes: 11,
    });
    expect(r.kind).toBe('response');
    if (r.kind !== 'response') return;
    expect(r.status).toBe(201);
    expect(r.body.toString()).toBe('{"ok":true,');
    expect(r.responseBytes).toBe(40);
    expect(r.requestBytes).toBe(7);
    const got = server.received.at(-1)!;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/hook');
    expect(got.body).toBe('{"n":1}');
    expect(got.headers['x-a']).toBe('1');
  });

  it('a 5xx answer is a response with its status (the caller decides to retry)', async () => {
    server.behave(answer(503, 'down'));
    const r = await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 5000 });
    expect(r).toMatchObject({ kind: 'response', status: 503 });
  });

  it('429 with Retry-After carries the header', async () => {
    server.behave(answer(429, '', { 'retry-after': '7' }));
    const r = await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 5000 });
    if (r.kind !== 'response') throw new Error(r.error);
    expect(r.status).toBe(429);
    expect(parseRetryAfter(headerValue(r.headers, 'Retry-After'))).toBe(7000);
  });

  it('a server that never answers times out', async () => {
    server.behave(hang);
    const r = await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 300 });
    expect(r).toMatchObject({ kind: 'timeout', error: 'no answer within 300 ms' });
    expect(r.latencyMs).toBeGreaterThanOrEqual(290);
  });

  it('a slow answer within the timeout succeeds; past it, it is a timeout', async () => {
    server.behave(slow(150));
    expect(
      await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 5000 }),
    ).toMatchObject({ kind: 'response', status: 200 });
    server.behave(slow(2000));
    expect(
      await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 200 }),
    ).toMatchObject({ kind: 'timeout' });
  });

  it('a body that stalls mid-answer times out too', async () => {
    server.behave((_q, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
    });
    const r = await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 300 });
    expect(r.kind).toBe('timeout');
  });

  it('a connection closed without an answer is a connection failure', async () => {
    server.behave(closeConnection);
    const r = await client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 5000 });
    expect(r.kind).toBe('connection');
    if (r.kind === 'connection') expect(r.error).toMatch(/closed|socket|reset/i);
  });

  it('a refused connection is a connection failure', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await client.send({
      method: 'POST',
      url: `http://127.0.0.1:${port}/`,
      headers: {},
      body: 'x',
      timeoutMs: 5000,
    });
    expect(r).toMatchObject({ kind: 'connection', code: 'ECONNREFUSED' });
  });

  it('an answer larger than the limit is cut off', async () => {
    const small = createClient({ maxResponseBytes: 1024 });
    server.behave(answer(200, 'y'.repeat(64 * 1024)));
    const r = await small.send({ method: 'GET', url: server.url, headers: {}, timeoutMs: 5000 });
    await small.close();
    expect(r).toMatchObject({ kind: 'connection', error: 'response larger than 1024 bytes' });
  });
});

describe('HTTP client thread lifecycle', () => {
  it('answers calls made together, and calls after close end as connection failures', async () => {
    const server = await startServer();
    server.behave(answer(200, 'ok'));
    const client = threadHttpClient();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.send({ method: 'POST', url: server.url, headers: {}, body: String(i), timeoutMs: 5000 })),
    );
    expect(results.map((r) => r.kind === 'response' && r.status)).toEqual(Array(50).fill(200));
    expect(results.every((r) => r.kind === 'response' && Buffer.isBuffer(r.body))).toBe(true);
    expect(new Set(server.received.map((r) => r.body)).size).toBe(50);
    await client.close();
    expect(await client.send({ method: 'POST', url: server.url, headers: {}, body: 'late', timeoutMs: 5000 })).toMatchObject({
      kind: 'connection',
      error: 'HTTP client closed',
    });
    await server.close();
  });

  it('a call in flight when the client closes ends as a connection failure, not a hang', async () => {
    const server = await startServer();
    server.behave(hang);
    const client = threadHttpClient();
    const inFlight = client.send({ method: 'POST', url: server.url, headers: {}, body: 'x', timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 200));
    await client.close();
    expect(await inFlight).toMatchObject({ kind: 'connection' });
    await server.close();
  });
});

describe('private networks denied (SSRF guard)', () => {
  it('classifies addresses', async () => {
    const { isPrivateAddress } = await import('../src/http/destinations.ts');
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1'])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) expect(isPrivateAddress(a), a).toBe(false);
  });

  describe.each([
    ['in this thread', createHttpClient],
    ['on a worker thread', threadHttpClient],
  ])('the client (%s)', (_name, createClient) => {
    let server: TestServer;
    const client = createClient({ allowPrivateNetworks: false });
    beforeAll(async () => {
      server = await startServer();
      server.behave(answer(200, 'ok'));
    });
    afterAll(async () => {
      await client.close();
      await server.close();
    });

    it('refuses a name that resolves to loopback, and an IP literal, without sending anything', async () => {
      const port = new URL(server.url).port;
      const before = server.received.length;
      for (const url of [`http://localhost:${port}/x`, `http://127.0.0.1:${port}/x`, `http://[::1]:${port}/x`, 'http://169.254.169.254/latest/meta-data']) {
        const r = await client.send({ method: 'POST', url, headers: {}, body: 'x', timeoutMs: 2000 });
        expect(r, url).toMatchObject({ kind: 'connection', code: 'DESTINATION_NOT_ALLOWED' });
      }
      expect(server.received.length).toBe(before);
    });
  });
});
