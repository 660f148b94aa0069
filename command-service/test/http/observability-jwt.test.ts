import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorOf, startTestService, type TestService } from '../support.ts';

const jwtSecret = 'sso-shared-secret-of-at-least-32-characters';
let t: TestService;
beforeAll(async () => {
  t = await startTestService({ auth: { jwt: { secret: jwtSecret, tenantClaim: 'keel_tenant', roleClaim: 'keel_role', issuer: 'https://sso.test' } } });
});
afterAll(async () => t?.close());

describe('OpenAPI, metrics, readiness', () => {
  it('documents every write route at /docs with its schemas and bearer security', async () => {
    const doc = (await t.app.inject('/docs/json')).json() as { paths: Record<string, Record<string, { security?: unknown; requestBody?: { content: Record<string, unknown> }; summary?: string }>> };
    const expected: [string, string][] = [
      ['/v1/tenants', 'post'],
      ['/v1/tenants/{tenantId}/suspend', 'post'],
      ['/v1/tenants/{tenantId}/reinstate', 'post'],
      ['/v1/tenants/{tenantId}/erase', 'post'],
      ['/v1/tenants/{tenantId}/api-keys', 'post'],
      ['/v1/tenants/{tenantId}/api-keys/{keyId}', 'delete'],
      ['/v1/tenants/{tenantId}/users', 'post'],
      ['/v1/tenants/{tenantId}/users/{userId}/roles', 'post'],
      ['/v1/tenants/{tenantId}/users/{userId}/roles/{role}', 'delete'],
      ['/v1/tenants/{tenantId}/ingest', 'post'],
      ['/v1/tenants/{tenantId}/connectors', 'post'],
      ['/v1/tenants/{tenantId}/connectors/{connectorId}/credentials', 'post'],
      ['/v1/tenants/{tenantId}/connectors/{connectorId}/pause', 'post'],
      ['/v1/tenants/{tenantId}/connectors/{connectorId}/resume', 'post'],
      ['/v1/tenants/{tenantId}/connectors/{connectorId}', 'delete'],
      ['/v1/tenants/{tenantId}/flows', 'post'],
      ['/v1/tenants/{tenantId}/flows/{flowId}/versions', 'post'],
      ['/v1/tenants/{tenantId}/flows/{flowId}/enable', 'post'],
      ['/v1/tenants/{tenantId}/flows/{flowId}/disable', 'post'],
      ['/v1/tenants/{tenantId}/webhooks', 'post'],
      ['/v1/tenants/{tenantId}/webhooks/{webhookId}', 'patch'],
      ['/v1/tenants/{tenantId}/webhooks/{webhookId}', 'delete'],
      ['/v1/tenants/{tenantId}/webhooks/{webhookId}/redrive', 'post'],
      ['/v1/tenants/{tenantId}/sources', 'post'],
      ['/v1/tenants/{tenantId}/sources/{sourceId}', 'delete'],
      ['/v1/hooks/{tenantId}/{sourceId}', 'post'],
    ];
    for (const [path, method] of expected) {
      const op = doc.paths[path]?.[method];
      expect([path, method, !!op?.summary]).toEqual([path, method, true]);
      if (!path.startsWith('/v1/hooks')) expect([path, op!.security]).toEqual([path, [{ bearerAuth: [] }]]);
    }
    expect(Object.keys(doc.paths['/v1/tenants/{tenantId}/ingest']!.post!.requestBody!.content).sort()).toEqual(['application/json', 'application/x-ndjson']);
  });

  it('exports request, command and append latency and events appended by type', async () => {
    const { tenantId, apiKey } = await t.createTenant();
    await t.call('POST', `/v1/tenants/${tenantId}/connectors`, { kind: 'http', name: 'm' }, {}, apiKey);
    await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 's', entityType: 'e', externalId: '1', payload: {} }], {}, apiKey);
    const m = (await t.app.inject('/metrics')).body;
    expect(m).toMatch(/keel_command_duration_seconds_count\{command="InstallConnector",outcome="appended"\} 1/);
    expect(m).toMatch(/keel_store_append_duration_seconds_count\{kind="stream"\} \d+/);
    expect(m).toMatch(/keel_store_append_duration_seconds_count\{kind="batch"\} \d+/);
    expect(m).toMatch(/keel_events_appended_total\{type="ConnectorInstalled"\} 1/);
    expect(m).toMatch(/keel_events_appended_total\{type="RecordIngested"\} 1/);
    expect(m).toMatch(/keel_ingest_records_total\{outcome="accepted",via="api"\} 1/);
    expect(m).toMatch(/keel_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/v1\/tenants\/:tenantId\/ingest",status_code="200"\}/);
  });

  it('is ready once the store, PostgreSQL and the auth projection are', async () => {
    const r = await t.app.inject('/ready');
    expect(r.json()).toEqual({ status: 'ready', checks: { database: 'ok', store: 'ok', 'auth-projection': 'ok' } });
  });
});

describe('SSO users (JWT bearer tokens)', () => {
  const token = (claims: Record<string, unknown>, sub: string) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuer('https://sso.test').setExpirationTime('5m').sign(new TextEncoder().encode(jwtSecret));

  it('act with the role granted to them; their events carry the user as actor', async () => {
    const { tenantId, apiKey } = await t.createTenant();
    await t.call('POST', `/v1/tenants/${tenantId}/users`, { email: 'op@example.test', role: 'operator', userId: 'okta|op' }, {}, apiKey);
    const jwt = await token({ keel_tenant: tenantId }, 'okta|op');
    const before = await t.head();
    const r = await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [{ source: 's', entityType: 'e', externalId: 'by-user', payload: {} }], {}, jwt);
    expect(r.statusCode).toBe(200);
    const [e] = await t.events(before);
    expect(e!.actor).toEqual({ kind: 'user', id: 'okta|op' });
    const denied = await t.call('POST', `/v1/tenants/${tenantId}/connectors`, { kind: 'http', name: 'x' }, {}, jwt);
    expect(denied.statusCode).toBe(403);
    // a token for one tenant never reaches another
    const other = await t.createTenant('Other');
    const cross = await t.call('POST', `/v1/tenants/${other.tenantId}/ingest`, [{ source: 's', entityType: 'e', externalId: 'x', payload: {} }], {}, jwt);
    expect(cross.statusCode).toBe(404);
    expect(errorOf(cross).code).toBe('NOT_FOUND');
    const stranger = await token({ keel_tenant: tenantId }, 'okta|stranger');
    expect((await t.call('POST', `/v1/tenants/${tenantId}/ingest`, [], {}, stranger)).statusCode).toBe(403);
  });
});
