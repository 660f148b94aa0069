import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyAuthEventsInTransaction,
  authMigrations,
  canAssignRole,
  createAuthenticator,
  hashSecret,
  loadAdminKey,
  loadAuthConfig,
  newApiKey,
  parseApiKey,
  permissionTable,
  roleHas,
  runMigrations,
  verifySecret,
  type RecordedEvent,
} from '../src/index.ts';
import { freshDatabase } from '../../test/support.ts';

let pool: pg.Pool;
let position = 0;
const ev = (type: string, tenantId: string, data: Record<string, unknown>): RecordedEvent => ({
  eventId: `e${++position}`,
  type,
  schemaVersion: 1,
  tenantId,
  streamId: `${type.startsWith('Tenant') ? 'tenant' : 'access'}-${tenantId}-root`,
  streamPosition: position,
  globalPosition: position,
  occurredAt: new Date(),
  recordedAt: new Date(),
  actor: { kind: 'system', id: 'test' },
  data,
});

beforeAll(async () => {
  const url = await freshDatabase('auth');
  await runMigrations(url, [authMigrations]);
  pool = new pg.Pool({ connectionString: url, max: 5 });
});
afterAll(async () => pool?.end());

describe('API key format and hashing', () => {
  it('issues keel_<id>_<secret>, hashes the secret with scrypt, verifies only the right secret', async () => {
    const k = newApiKey();
    expect(k.apiKey).toMatch(/^keel_[0-9a-f]{20}_[0-9a-f]{48}$/);
    expect(parseApiKey(k.apiKey)).toEqual({ keyId: k.keyId, secret: k.secret });
    expect(parseApiKey('keel_abc_def')).toBeUndefined();
    const h = await hashSecret(k.secret);
    expect(h).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(h).not.toContain(k.secret);
    expect(await verifySecret(k.secret, h)).toBe(true);
    expect(await verifySecret(k.secret.replace(/.$/, (c) => (c === '0' ? '1' : '0')), h)).toBe(false);
    expect(await verifySecret(k.secret, 'md5$whatever')).toBe(false);
  });
});

describe('permission table', () => {
  it('follows owner ⊇ admin ⊇ {operator, auditor} ⊇ viewer', () => {
    expect(roleHas('operator', 'record:ingest')).toBe(true);
    expect(roleHas('auditor', 'record:ingest')).toBe(false);
    expect(roleHas('auditor', 'audit:read')).toBe(true);
    expect(roleHas('operator', 'audit:read')).toBe(false);
    expect(roleHas('viewer', 'dashboard:read')).toBe(true);
    expect(roleHas('admin', 'connector:write')).toBe(true);
    expect(roleHas('owner', 'tenant:create')).toBe(false);
    for (const [p, row] of Object.entries(permissionTable)) {
      // whatever an admin may do, an owner may; whatever an operator or auditor may, an admin may
      if ((row.roles as readonly string[]).includes('admin')) expect([p, (row.roles as readonly string[]).includes('owner')]).toEqual([p, true]);
      if ((row.roles as readonly string[]).some((r) => r === 'operator' || r === 'auditor')) expect([p, (row.roles as readonly string[]).includes('admin')]).toEqual([p, true]);
      if ((row.roles as readonly string[]).includes('viewer')) expect([p, row.roles.length]).toEqual([p, 5]);
    }
    expect(canAssignRole('admin', 'owner')).toBe(false);
    expect(canAssignRole('admin', 'admin')).toBe(true);
    expect(canAssignRole('operator', 'viewer')).toBe(false);
    expect(canAssignRole('platformAdmin', 'owner')).toBe(true);
  });
});

describe('authenticator', () => {
  const adminKey = 'platform-admin-key-for-tests-0123456789';

  it('knows the platform admin, valid keys, and refuses unknown, wrong and revoked ones', async () => {
    const auth = createAuthenticator({ pool, adminKey, cacheTtlMs: 1000 });
    expect(await auth.authenticate(`Bearer ${adminKey}`)).toMatchObject({ kind: 'platformAdmin' });
    const k = newApiKey();
    await applyAuthEventsInTransaction(pool, [
      ev('TenantCreated', 'ten1', { name: 'T' }),
      ev('ApiKeyIssued', 'ten1', { keyId: k.keyId, name: 'k', role: 'operator', secretHash: await hashSecret(k.secret) }),
    ]);
    expect(await auth.authenticate(`Bearer ${k.apiKey}`)).toEqual({
      kind: 'apiKey',
      keyId: k.keyId,
      tenantId: 'ten1',
      role: 'operator',
      actor: { kind: 'apiKey', id: k.keyId },
    });
    // The key with its last character changed (to one it is not: a key ending in 0 stayed valid).
    const wrong = `${k.apiKey.slice(0, -1)}${k.apiKey.endsWith('0') ? '1' : '0'}`;
    for (const header of [undefined, '', 'Basic abc', `Bearer ${wrong}`, `Bearer ${newApiKey().apiKey}`, 'Bearer nonsense'])
      await expect(auth.authenticate(header)).rejects.toMatchObject({ statusCode: 401, code: 'UNAUTHENTICATED' });

    await applyAuthEventsInTransaction(pool, [ev('ApiKeyRevoked', 'ten1', { keyId: k.keyId })]);
    auth.forgetKey(k.keyId);
    await expect(auth.authenticate(`Bearer ${k.apiKey}`)).rejects.toMatchObject({ statusCode: 401, code: 'KEY_REVOKED', audit: { tenantId: 'ten1', keyId: k.keyId } });
  });

  it('another process notices a revocation within the cache TTL', async () => {
    const auth = createAuthenticator({ pool, adminKey, cacheTtlMs: 200 });
    const k = newApiKey();
    await applyAuthEventsInTransaction(pool, [
      ev('TenantCreated', 'ten2', { name: 'T' }),
      ev('ApiKeyIssued', 'ten2', { keyId: k.keyId, name: 'k', role: 'admin', secretHash: await hashSecret(k.secret) }),
    ]);
    await auth.authenticate(`Bearer ${k.apiKey}`);
    await applyAuthEventsInTransaction(pool, [ev('ApiKeyRevoked', 'ten2', { keyId: k.keyId })]);
    await new Promise((r) => setTimeout(r, 250));
    await expect(auth.authenticate(`Bearer ${k.apiKey}`)).rejects.toMatchObject({ code: 'KEY_REVOKED' });
  });

  it('the auth projection is order-safe: replaying older events never undoes newer ones', async () => {
    const k = newApiKey();
    const issued = ev('ApiKeyIssued', 'ten3', { keyId: k.keyId, name: 'k', role: 'viewer', secretHash: 'scrypt$x' });
    const created = ev('TenantCreated', 'ten3', { name: 'T' });
    const suspended = ev('TenantSuspended', 'ten3', { reason: 'r' });
    const revoked = ev('ApiKeyRevoked', 'ten3', { keyId: k.keyId });
    const granted = ev('RoleGranted', 'ten3', { userId: 'u', role: 'admin' });
    const roleRevoked = ev('RoleRevoked', 'ten3', { userId: 'u', role: 'admin' });
    await applyAuthEventsInTransaction(pool, [created, suspended, revoked, roleRevoked]);
    await applyAuthEventsInTransaction(pool, [created, issued, granted]); // late and out of order
    const t = await pool.query("select status from keel_auth_tenants where tenant_id = 'ten3'");
    expect(t.rows[0].status).toBe('suspended');
    const key = await pool.query('select revoked_at is not null as revoked from keel_auth_api_keys where key_id = $1', [k.keyId]);
    expect(key.rows[0].revoked).toBe(true);
    const role = await pool.query("select granted from keel_auth_user_roles where tenant_id = 'ten3' and user_id = 'u'");
    expect(role.rows[0].granted).toBe(false);
  });

  describe('JWT bearer tokens', () => {
    it('with a shared secret: tenant and role from claims, or the role from the user\'s grants', async () => {
      const secret = 'a-shared-secret-of-at-least-32-chars!!';
      const cfg = loadAuthConfig({ KEEL_JWT_SECRET: secret, KEEL_JWT_ISSUER: 'https://sso.test', KEEL_JWT_AUDIENCE: 'keel' });
      const auth = createAuthenticator({ pool, adminKey, jwt: cfg.jwt });
      await applyAuthEventsInTransaction(pool, [ev('TenantCreated', 'tj', { name: 'T' }), ev('UserInvited', 'tj', { userId: 'alice', email: 'x', role: 'auditor' })]);
      const sign = (claims: Record<string, unknown>, opts: { iss?: string; aud?: string; exp?: string; key?: string } = {}) =>
        new SignJWT(claims)
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(String(claims.sub ?? 'alice'))
          .setIssuer(opts.iss ?? 'https://sso.test')
          .setAudience(opts.aud ?? 'keel')
          .setExpirationTime(opts.exp ?? '5m')
          .sign(new TextEncoder().encode(opts.key ?? secret));
      expect(await auth.authenticate(`Bearer ${await sign({ keel_tenant: 'tj' })}`)).toEqual({
        kind: 'user',
        userId: 'alice',
        tenantId: 'tj',
        role: 'auditor',
        actor: { kind: 'user', id: 'alice' },
      });
      expect(await auth.authenticate(`Bearer ${await sign({ keel_tenant: 'tj', keel_role: 'viewer' })}`)).toMatchObject({ role: 'viewer' });
      for (const bad of [
        await sign({ keel_tenant: 'tj' }, { key: 'another-secret-another-secret-another!' }),
        await sign({ keel_tenant: 'tj' }, { iss: 'https://evil.test' }),
        await sign({ keel_tenant: 'tj' }, { aud: 'other' }),
        await sign({ keel_tenant: 'tj' }, { exp: '-1m' }),
        await sign({}),
        await sign({ keel_tenant: 'nope' }),
        await sign({ keel_tenant: 'tj', keel_role: 'god' }),
      ])
        await expect(auth.authenticate(`Bearer ${bad}`)).rejects.toMatchObject({ statusCode: 401 });
      await expect(auth.authenticate(`Bearer ${await sign({ keel_tenant: 'tj', sub: 'stranger' })}`)).rejects.toMatchObject({ statusCode: 403 });
    });

    it('with a JWKS served over HTTP (an SSO provider)', async () => {
      const { publicKey, privateKey } = await generateKeyPair('RS256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
      const server: Server = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`;
        const auth = createAuthenticator({ pool, adminKey, jwt: loadAuthConfig({ KEEL_JWT_JWKS_URL: url }).jwt });
        await applyAuthEventsInTransaction(pool, [ev('TenantCreated', 'tk', { name: 'T' })]);
        const token = await new SignJWT({ keel_tenant: 'tk', keel_role: 'operator' })
          .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
          .setSubject('bob')
          .setExpirationTime('5m')
          .sign(privateKey);
        expect(await auth.authenticate(`Bearer ${token}`)).toMatchObject({ kind: 'user', userId: 'bob', tenantId: 'tk', role: 'operator' });
        const other = await generateKeyPair('RS256');
        const forged = await new SignJWT({ keel_tenant: 'tk', keel_role: 'owner' }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('eve').setExpirationTime('5m').sign(other.privateKey);
        await expect(auth.authenticate(`Bearer ${forged}`)).rejects.toMatchObject({ statusCode: 401 });
      } finally {
        await new Promise((r) => server.close(r));
      }
    });

    it('refuses bad JWT configuration at start', () => {
      expect(() => loadAuthConfig({ KEEL_JWT_SECRET: 'short' })).toThrow(/at least 32/);
      expect(() => loadAuthConfig({ KEEL_JWT_JWKS_URL: 'ftp://x' })).toThrow(/http\(s\) URL/);
      expect(() => loadAuthConfig({ KEEL_JWT_SECRET: 'x'.repeat(40), KEEL_JWT_JWKS_URL: 'https://a.test' })).toThrow(/not both/);
      expect(() => loadAuthConfig({ KEEL_AUTH_CACHE_MS: '5000' })).toThrow(/KEEL_AUTH_CACHE_MS/);
    });
  });
});

describe('platform admin key', () => {
  it('comes from KEEL_ADMIN_KEY, or is generated once in the data dir (0600) and kept', () => {
    expect(loadAdminKey({ dataDir: '/nonexistent', env: { KEEL_ADMIN_KEY: 'x'.repeat(30) } })).toMatchObject({ key: 'x'.repeat(30), generated: false });
    expect(() => loadAdminKey({ dataDir: '/nonexistent', env: { KEEL_ADMIN_KEY: 'short' } })).toThrow(/24 characters/);
    const dir = mkdtempSync(join(tmpdir(), 'keel-admin-'));
    const a = loadAdminKey({ dataDir: dir, env: {} });
    expect(a.generated).toBe(true);
    expect(a.key).toMatch(/^keel_admin_[0-9a-f]{64}$/);
    expect(statSync(join(dir, 'admin.key')).mode & 0o777).toBe(0o600);
    const b = loadAdminKey({ dataDir: dir, env: {} });
    expect(b).toMatchObject({ key: a.key, generated: false });
  });
});
