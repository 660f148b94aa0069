import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { freshDatabase } from '../../test/support.ts';
import { parseCredentials, parseHttpConnectorConfig } from '../src/connectors/config.ts';
import { buildHttpRequest } from '../src/connectors/http-request.ts';
import { createTokenCache, TokenError } from '../src/connectors/oauth2.ts';
import {
  applyUpsert,
  buildUpsert,
  createSinkPools,
  SinkInputError,
  sinkRows,
} from '../src/connectors/postgres-sink.ts';
import { parseFlowDefinition, type HttpStep, type PostgresStep } from '../src/flows/definition.ts';
import { captureDestinations, liveDestinations } from '../src/flows/destinations.ts';
import { executeStep, type ConnectorRecord, type StepContext, type StepDeps } from '../src/flows/steps.ts';
import { createHttpClient } from '../src/http/client.ts';
import { answer, startServer, type TestServer } from './servers.ts';

const http = createHttpClient();
const pools = createSinkPools();
afterAll(async () => {
  await http.close();
  await pools.close();
});

function ctx(over: Partial<StepContext> = {}): StepContext {
  return {
    tenantId: 't1',
    runId: 'run-1',
    stepIndex: 0,
    attempt: 1,
    trigger: {},
    steps: [],
    captureBodies: false,
    ...over,
  };
}

/** Step dependencies over a fixed set of installed connectors; credentials here are plain text (encryption is the runtime's). */
function deps(
  connectors: ConnectorRecord[],
  destinations = liveDestinations(http, pools),
  tokens = createTokenCache(http),
): StepDeps {
  return {
    connector: (_t, id) => Promise.resolve(connectors.find((c) => c.connectorId === id)),
    openSecret: (_t, c) => Promise.resolve(c),
    destinations,
    tokens,
    defaultTimeoutMs: 5000,
    guard: async (_d, call) => ({ ran: true, value: (await call()).value }),
  };
}

describe('HTTP request connector against a real local server', () => {
  let api: TestServer;
  let tokenServer: TestServer;
  let issued = 0;
  beforeAll(async () => {
    api = await startServer(answer(200, '{"id":"remote-1"}', { 'content-type': 'application/json' }));
    tokenServer = await startServer((req, res, body) => {
      const auth = req.headers.authorization ?? '';
      const form = new URLSearchParams(body);
      const basicOk = auth === `Basic ${Buffer.from('client-1:s3cret').toString('base64')}`;
      const bodyOk = form.get('client_id') === 'client-1' && form.get('client_secret') === 's3cret';
      if (form.get('grant_type') !== 'client_credentials' || !(basicOk || bodyOk)) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_client"}');
        return;
      }
      issued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          access_token: `tok-${issued}`,
          token_type: 'Bearer',
          expires_in: 3600,
          scope: form.get('scope'),
        }),
      );
    });
  });
  afterAll(async () => {
    await api.close();
    await tokenServer.close();
  });

  const step = (over: Partial<HttpStep> = {}): HttpStep => ({
    type: 'http',
    connectorId: 'api',
    method: 'PUT',
    url: '/contacts/{{id}}',
    headers: { 'x-source': '{{ src }}' },
    ...over,
  });

  it('builds method, URL from template + baseUrl, headers, JSON body and the idempotency key', async () => {
    const req = await buildHttpRequest(
      step(),
      parseHttpConnectorConfig({ baseUrl: `${api.url}/v2`, headers: { 'x-tenant': 'acme' } }),
      { id: 'a/b', src: 'crm' },
      { idempotencyKey: 'run-1:0', defaultTimeoutMs: 1000 },
    );
    expect(req).toMatchObject({
      method: 'PUT',
      url: `${api.url}/v2/contacts/a%2Fb`,
      body: '{"id":"a/b","src":"crm"}',
      timeoutMs: 1000,
    });
    expect(req.headers).toEqual({
      'x-tenant': 'acme',
      'x-source': 'crm',
      'idempotency-key': 'run-1:0',
      'content-type': 'application/json',
    });
  });

  it.each([
    [
      'apiKey header',
      { type: 'apiKey', header: 'X-Key' },
      '{"apiKey":"k1"}',
      (r: { headers: Record<string, unknown>; url: string }) => expect(r.headers['x-key']).toBe('k1'),
    ],
    [
      'apiKey query',
      { type: 'apiKey', query: 'key' },
      'k2',
      (r: { headers: Record<string, unknown>; url: string }) => expect(r.url).toMatch(/\?key=k2$/),
    ],
    [
      'bearer',
      { type: 'bearer' },
      '{"token":"t1"}',
      (r: { headers: Record<string, unknown>; url: string }) => expect(r.headers.authorization).toBe('Bearer t1'),
    ],
    [
      'basic',
      { type: 'basic', username: 'u' },
      'p:w',
      (r: { headers: Record<string, unknown>; url: string }) =>
        expect(r.headers.authorization).toBe(`Basic ${Buffer.from('u:p:w').toString('base64')}`),
    ],
  ])('auth: %s reaches the server', async (_name, auth, creds, check) => {
    const d = deps([
      { connectorId: 'api', kind: 'http', config: { baseUrl: api.url, auth }, credentials: creds, status: 'active' },
    ]);
    const out = await executeStep(step(), { id: 'x', src: 's' }, ctx(), d);
    expect(out).toMatchObject({ kind: 'succeeded', output: { id: 'remote-1' } });
    check(api.received.at(-1)! as unknown as { headers: Record<string, unknown>; url: string });
    // the summary never holds the secret
    expect(JSON.stringify(out)).not.toMatch(/k1|k2|t1|p:w|cDp3/);
  });

  it('OAuth2 client credentials: one token request for many calls, concurrent callers share it, 401 refreshes it', async () => {
    const tokens = createTokenCache(http);
    const conn: ConnectorRecord = {
      connectorId: 'api',
      kind: 'http',
      config: {
        baseUrl: api.url,
        auth: { type: 'oauth2', tokenUrl: `${tokenServer.url}/token`, clientId: 'client-1', scope: 'write' },
      },
      credentials: '{"clientSecret":"s3cret"}',
      status: 'active',
    };
    const d = deps([conn], liveDestinations(http, pools), tokens);
    const before = issued;
    const outs = await Promise.all(
      Array.from({ length: 10 }, (_, i) => executeStep(step(), { id: `n${i}`, src: 's' }, ctx(), d)),
    );
    expect(outs.every((o) => o.kind === 'succeeded')).toBe(true);
    expect(tokens.fetches).toBe(1);
    expect(issued - before).toBe(1);
    expect(api.received.at(-1)!.headers.authorization).toBe(`Bearer tok-${issued}`);
    const tokenReq = tokenServer.received.at(-1)!;
    expect(new URLSearchParams(tokenReq.body).get('scope')).toBe('write');

    // the API revokes the token: 401 → the token is dropped, and the retry gets a new one
    api.behave(answer(401, ''));
    const failed = await executeStep(step(), { id: 'z', src: 's' }, ctx(), d);
    expect(failed).toMatchObject({ kind: 'failed', retryable: true, error: 'destination answered 401' });
    api.behave(answer(200, '{}', { 'content-type': 'application/json' }));
    await executeStep(step(), { id: 'z', src: 's' }, ctx({ attempt: 2 }), d);
    expect(tokens.fetches).toBe(2);
    expect(api.received.at(-1)!.headers.authorization).toBe(`Bearer tok-${issued}`);
  });

  it('OAuth2 with client_secret_post, and a refused client is a permanent failure', async () => {
    const tokens = createTokenCache(http);
    const t = await tokens.token({
      tokenUrl: `${tokenServer.url}/token`,
      clientId: 'client-1',
      clientSecret: 's3cret',
      clientAuth: 'body',
    });
    expect(t).toMatch(/^tok-/);
    await expect(
      tokens.token({ tokenUrl: `${tokenServer.url}/token`, clientId: 'client-1', clientSecret: 'wrong' }),
    ).rejects.toMatchObject({ retryable: false, status: 401 });
    await expect(
      tokens.token({ tokenUrl: `${tokenServer.url}/token`, clientId: 'client-1', clientSecret: 'wrong' }),
    ).rejects.toBeInstanceOf(TokenError);
  });

  it('classifies answers: 2xx ok, 4xx permanent, 5xx/429 retryable with Retry-After', async () => {
    const d = deps([{ connectorId: 'api', kind: 'http', config: { baseUrl: api.url }, status: 'active' }]);
    api.behave(answer(422, '{"error":"bad"}', { 'content-type': 'application/json' }));
    expect(await executeStep(step(), { id: 'x', src: 's' }, ctx(), d)).toMatchObject({
      kind: 'failed',
      retryable: false,
      error: 'destination answered 422',
    });
    api.behave(answer(503, ''));
    expect(await executeStep(step(), { id: 'x', src: 's' }, ctx(), d)).toMatchObject({
      kind: 'failed',
      retryable: true,
    });
    api.behave(answer(429, '', { 'retry-after': '2' }));
    expect(await executeStep(step(), { id: 'x', src: 's' }, ctx(), d)).toMatchObject({
      kind: 'failed',
      retryable: true,
      retryAfterMs: 2000,
    });
    api.behave(answer(200, '{}', { 'content-type': 'application/json' }));
  });

  it('a paused connector defers, a removed or missing one fails permanently', async () => {
    const base = { connectorId: 'api', kind: 'http', config: { baseUrl: api.url } };
    expect(
      await executeStep(step(), { id: 'x', src: 's' }, ctx(), deps([{ ...base, status: 'paused' }])),
    ).toMatchObject({ kind: 'deferred' });
    expect(
      await executeStep(step(), { id: 'x', src: 's' }, ctx(), deps([{ ...base, status: 'removed' }])),
    ).toMatchObject({ kind: 'failed', retryable: false });
    expect(await executeStep(step(), { id: 'x', src: 's' }, ctx(), deps([]))).toMatchObject({
      kind: 'failed',
      retryable: false,
    });
  });

  it('credentials: JSON object or a bare secret', () => {
    expect(parseCredentials('{"token":"a","junk":1}', 'bearer')).toEqual({ token: 'a' });
    expect(parseCredentials('abc', 'apiKey')).toEqual({ apiKey: 'abc' });
    expect(parseCredentials('postgres://u:p@h/db', 'postgres')).toEqual({ connectionString: 'postgres://u:p@h/db' });
    expect(parseCredentials(undefined, 'basic')).toEqual({});
  });

  it('a dry run captures the request instead of sending it, and shows no secret', async () => {
    const capture = captureDestinations();
    const d = deps(
      [
        {
          connectorId: 'api',
          kind: 'http',
          config: { baseUrl: api.url, auth: { type: 'bearer' } },
          credentials: 'secret-token',
          status: 'active',
        },
      ],
      capture,
    );
    const before = api.received.length;
    const out = await executeStep(step(), { id: 'x', src: 's' }, ctx(), d);
    expect(out.kind).toBe('succeeded');
    expect(api.received.length).toBe(before);
    expect(capture.captured).toEqual([
      {
        kind: 'http',
        method: 'PUT',
        url: `${api.url}/contacts/x`,
        headers: expect.objectContaining({ authorization: '[redacted]', 'idempotency-key': 'run-1:0' }),
        body: '{"id":"x","src":"s"}',
      },
    ]);
    expect(JSON.stringify(capture.captured)).not.toContain('secret-token');
  });
});

describe('PostgreSQL sink against a real database', () => {
  let url: string;
  let db: pg.Pool;
  const step: PostgresStep = { type: 'postgres', connectorId: 'sink', table: 'contacts', key: ['id'] };
  beforeAll(async () => {
    url = await freshDatabase('sink');
    db = new pg.Pool({ connectionString: url, max: 2 });
    db.on('error', () => undefined);
    await db.query(
      `create table contacts (id text primary key, name text, tags jsonb, score int, writes int not null default 0)`,
    );
    // Counts every write the sink makes, so "no double write" is observable, not assumed.
    await db.query(`create table write_log (id text, op text)`);
    await db.query(
      `create function log_write() returns trigger language plpgsql as $$ begin insert into write_log values (new.id, tg_op); return new; end $$`,
    );
    await db.query(
      `create trigger contacts_writes after insert or update on contacts for each row execute function log_write()`,
    );
  });
  afterAll(async () => {
    await db.end();
  });

  it('builds a parameterised upsert; duplicate keys collapse to the last row', () => {
    const s = buildUpsert(
      step,
      sinkRows([
        { id: 'a', name: 'x' },
        { id: 'a', name: 'y' },
        { id: 'b', name: 'z' },
      ]),
    );
    expect(s.text).toBe(
      'insert into "contacts" ("id", "name") values ($1, $2), ($3, $4) on conflict ("id") do update set "name" = excluded."name"',
    );
    expect(s.values).toEqual(['a', 'y', 'b', 'z']);
    expect(() => buildUpsert(step, sinkRows([{ name: 'no key' }]))).toThrow(SinkInputError);
    expect(() => buildUpsert(step, sinkRows([{ id: 'a', 'bad col': 1 }]))).toThrow(SinkInputError);
    expect(() => sinkRows([1 as never])).toThrow(SinkInputError);
  });

  it('upserts by key; the same idempotency key never writes twice', async () => {
    const rows = sinkRows([
      { id: 'c1', name: 'Ada', tags: ['x'], score: 1 },
      { id: 'c2', name: 'Alan', tags: [], score: 2 },
    ]);
    const stmt = buildUpsert(step, rows);
    expect(await applyUpsert(pools.pool(url), stmt, 'run-a:1')).toEqual({ applied: true, rows: 2 });
    expect(await applyUpsert(pools.pool(url), stmt, 'run-a:1')).toEqual({ applied: false, rows: 0 });
    const later = buildUpsert(step, sinkRows([{ id: 'c1', name: 'Ada L.', tags: ['x', 'y'], score: 5 }]));
    expect(await applyUpsert(pools.pool(url), later, 'run-b:1')).toEqual({ applied: true, rows: 1 });
    const { rows: got } = await db.query('select id, name, tags, score from contacts order by id');
    expect(got).toEqual([
      { id: 'c1', name: 'Ada L.', tags: ['x', 'y'], score: 5 },
      { id: 'c2', name: 'Alan', tags: [], score: 2 },
    ]);
    const { rows: log } = await db.query('select id, op from write_log order by id, op');
    expect(log).toEqual([
      { id: 'c1', op: 'INSERT' },
      { id: 'c1', op: 'UPDATE' },
      { id: 'c2', op: 'INSERT' },
    ]);
  });

  it('as a flow step: credentials hold the connection string; a bad column is a permanent failure; a dry run writes nothing', async () => {
    const conn: ConnectorRecord = {
      connectorId: 'sink',
      kind: 'postgres',
      config: {},
      credentials: JSON.stringify({ connectionString: url }),
      status: 'active',
    };
    const ok = await executeStep(step, { id: 'c3', name: 'Grace' }, ctx({ runId: 'run-c' }), deps([conn]));
    expect(ok).toMatchObject({
      kind: 'succeeded',
      summary: { type: 'postgres', table: 'public.contacts', rows: 1, applied: true },
    });
    const bad = await executeStep(step, { id: 'c4', nope: 1 }, ctx({ runId: 'run-d' }), deps([conn]));
    expect(bad).toMatchObject({ kind: 'failed', retryable: false });
    expect((bad as { error: string }).error).toMatch(/42703/);
    const capture = captureDestinations();
    const dry = await executeStep(step, { id: 'c5', name: 'Dry' }, ctx({ runId: 'run-e' }), deps([conn], capture));
    expect(dry).toMatchObject({ kind: 'succeeded', summary: { captured: true } });
    expect(capture.captured[0]).toMatchObject({ kind: 'postgres', values: ['c5', 'Dry'], idempotencyKey: 'run-e:0' });
    const { rows } = await db.query(`select id from contacts where id in ('c3','c4','c5') order by id`);
    expect(rows).toEqual([{ id: 'c3' }]);
  });

  it('an unreachable database is a retryable failure', async () => {
    const conn: ConnectorRecord = {
      connectorId: 'sink',
      kind: 'postgres',
      config: { connectionString: 'postgres://nobody@127.0.0.1:1/none' },
      status: 'active',
    };
    const out = await executeStep(step, { id: 'x' }, ctx({ runId: 'run-f' }), deps([conn]));
    expect(out).toMatchObject({ kind: 'failed', retryable: true });
  });
});

describe('a whole definition parses into steps that run', () => {
  it('transform output feeds the next step ($steps and $trigger bound)', async () => {
    const def = parseFlowDefinition({
      trigger: { eventType: 'RecordIngested' },
      steps: [{ type: 'transform', mapping: { id: '$trigger.data.externalId', n: '$count($steps)' } }],
    });
    const out = await executeStep(
      def.steps[0]!,
      null,
      ctx({ trigger: { data: { externalId: 'e1' } }, captureBodies: true }),
      deps([]),
    );
    expect(out).toMatchObject({
      kind: 'succeeded',
      output: { id: 'e1', n: 0 },
      summary: { type: 'transform', output: { id: 'e1', n: 0 } },
    });
  });
});
