import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Actor } from '../envelope.ts';
import { HttpError } from '../http/errors.ts';
import type { Role } from '../schemas/catalog.ts';
import { parseApiKey, safeEqual, verifySecret } from './api-keys.ts';
import { createJwtVerifier, looksLikeJwt, type JwtVerifier } from './jwt.ts';
import type { JwtConfig } from './config.ts';
import { highestRole, isRole } from './roles.ts';

export type TenantStatus = 'active' | 'suspended' | 'erased';

export interface TenantInfo {
  tenantId: string;
  name: string;
  status: TenantStatus;
}

/** Who is calling. Platform admins belong to no tenant and reach every tenant. */
export type Principal =
  | { kind: 'platformAdmin'; actor: Actor }
  | { kind: 'apiKey'; keyId: string; tenantId: string; role: Role; actor: Actor }
  | { kind: 'user'; userId: string; tenantId: string; role: Role; actor: Actor };

/** What to put in the caller's own audit trail when authentication itself failed for a known tenant. */
export interface AuthAudit {
  tenantId: string;
  keyId?: string;
  actor: Actor;
  reason: string;
}

/** A 401/403 from authentication; `audit` is set when the failure belongs in a tenant's trail. */
export class AuthError extends HttpError {
  constructor(code: string, statusCode: number, message: string, readonly audit?: AuthAudit) {
    super(code, statusCode, message);
  }
}

export interface Authenticator {
  /** Resolves the `Authorization` header to a principal; throws AuthError (401/403). */
  authenticate(authorization: string | undefined): Promise<Principal>;
  /** The tenant as the auth tables know it; undefined when it does not exist. */
  tenant(tenantId: string): Promise<TenantInfo | undefined>;
  /** Forget what is cached about a key (its revocation takes effect at once in this process). */
  forgetKey(keyId: string): void;
  forgetTenant(tenantId: string): void;
}

export interface AuthenticatorOptions {
  pool: pg.Pool;
  adminKey: string;
  jwt?: JwtConfig;
  /** Upper bound on how stale a cached key row or tenant may be. Default 1000 ms. */
  cacheTtlMs?: number;
}

interface KeyRow {
  key_id: string;
  tenant_id: string;
  role: Role;
  secret_hash: string;
  revoked: boolean;
  tenant_status: TenantStatus | null;
}

const MAX_CACHE = 10_000;

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { pool, adminKey } = options;
  const ttl = options.cacheTtlMs ?? 1000;
  const jwt: JwtVerifier | undefined = options.jwt ? createJwtVerifier(options.jwt) : undefined;
  const jwtConfig = options.jwt;

  const keyRows = new Map<string, { row: KeyRow | undefined; at: number }>();
  // sha-256 of a presented key → the stored hash it was verified against. A later change of the
  // stored hash (never happens today, but would on rotation) forces a fresh scrypt verification.
  const verified = new Map<string, string>();
  const verifying = new Map<string, Promise<boolean>>();
  const tenants = new Map<string, { info: TenantInfo; at: number }>();

  const unauthenticated = (message: string) => new AuthError('UNAUTHENTICATED', 401, message);

  async function keyRow(keyId: string): Promise<KeyRow | undefined> {
    const hit = keyRows.get(keyId);
    if (hit && Date.now() - hit.at < ttl) return hit.row;
    const r = await pool.query<KeyRow>(
      `select k.key_id, k.tenant_id, k.role, k.secret_hash, k.revoked_at is not null as revoked, t.status as tenant_status
         from keel_auth_api_keys k left join keel_auth_tenants t on t.tenant_id = k.tenant_id
        where k.key_id = $1`,
      [keyId],
    );
    const row = r.rows[0];
    if (keyRows.size > MAX_CACHE) keyRows.clear();
    keyRows.set(keyId, { row, at: Date.now() });
    return row;
  }

  async function secretMatches(token: string, secret: string, storedHash: string): Promise<boolean> {
    const digest = createHash('sha256').update(token).digest('hex');
    if (verified.get(digest) === storedHash) return true;
    const flightKey = `${digest}:${storedHash}`;
    let p = verifying.get(flightKey);
    if (!p) {
      p = verifySecret(secret, storedHash).finally(() => verifying.delete(flightKey));
      verifying.set(flightKey, p);
    }
    const ok = await p;
    if (ok) {
      if (verified.size > MAX_CACHE) verified.clear();
      verified.set(digest, storedHash);
    }
    return ok;
  }

  async function tenant(tenantId: string): Promise<TenantInfo | undefined> {
    const hit = tenants.get(tenantId);
    if (hit && Date.now() - hit.at < ttl) return hit.info;
    const r = await pool.query<{ tenant_id: string; name: string; status: TenantStatus }>(
      'select tenant_id, name, status from keel_auth_tenants where tenant_id = $1',
      [tenantId],
    );
    const row = r.rows[0];
    if (!row) return undefined; // never cache absence: a tenant created a moment later must be seen
    const info: TenantInfo = { tenantId: row.tenant_id, name: row.name, status: row.status };
    if (tenants.size > MAX_CACHE) tenants.clear();
    tenants.set(tenantId, { info, at: Date.now() });
    return info;
  }

  async function userRole(tenantId: string, userId: string): Promise<Role | undefined> {
    const r = await pool.query<{ role: Role }>(
      'select role from keel_auth_user_roles where tenant_id = $1 and user_id = $2 and granted',
      [tenantId, userId],
    );
    return highestRole(r.rows.map((x) => x.role));
  }

  async function authenticateJwt(token: string): Promise<Principal> {
    if (!jwt || !jwtConfig) throw unauthenticated('invalid bearer token');
    let claims;
    try {
      claims = await jwt(token);
    } catch (e) {
      throw unauthenticated(`invalid token: ${(e as { code?: string }).code ?? 'verification failed'}`);
    }
    if (!claims.tenantId) throw unauthenticated(`the token has no "${jwtConfig.tenantClaim}" claim`);
    const t = await tenant(claims.tenantId);
    if (!t || t.status === 'erased') throw unauthenticated('the token names no existing tenant');
    const actor: Actor = { kind: 'user', id: claims.subject };
    let role: Role | undefined;
    if (claims.role !== undefined) {
      if (!isRole(claims.role)) throw unauthenticated(`the "${jwtConfig.roleClaim}" claim is not a Keel role`);
      role = claims.role;
    } else {
      role = await userRole(t.tenantId, claims.subject);
    }
    if (!role)
      throw new AuthError('FORBIDDEN', 403, 'this user holds no role in the tenant', {
        tenantId: t.tenantId,
        actor,
        reason: 'user without role',
      });
    return { kind: 'user', userId: claims.subject, tenantId: t.tenantId, role, actor };
  }

  return {
    tenant,
    forgetKey: (keyId) => void keyRows.delete(keyId),
    forgetTenant: (tenantId) => {
      tenants.delete(tenantId);
      for (const [k, v] of keyRows) if (v.row?.tenant_id === tenantId) keyRows.delete(k);
    },

    async authenticate(authorization) {
      if (!authorization) throw unauthenticated('missing Authorization: Bearer <key>');
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!m) throw unauthenticated('the Authorization header must be "Bearer <key>"');
      const token = m[1]!;

      if (safeEqual(token, adminKey)) return { kind: 'platformAdmin', actor: { kind: 'system', id: 'platform-admin' } };

      const parsed = parseApiKey(token);
      if (parsed) {
        const row = await keyRow(parsed.keyId);
        // Same answer for an unknown key and a wrong secret: no oracle for key ids.
        if (!row || !(await secretMatches(token, parsed.secret, row.secret_hash))) throw unauthenticated('invalid API key');
        const actor: Actor = { kind: 'apiKey', id: row.key_id };
        if (row.revoked || row.tenant_status === 'erased' || row.tenant_status === null) {
          const reason = row.revoked ? 'revoked key' : 'tenant erased';
          throw new AuthError('KEY_REVOKED', 401, row.revoked ? 'this API key was revoked' : 'the tenant of this key was erased', {
            tenantId: row.tenant_id,
            keyId: row.key_id,
            actor,
            reason,
          });
        }
        return { kind: 'apiKey', keyId: row.key_id, tenantId: row.tenant_id, role: row.role, actor };
      }

      if (looksLikeJwt(token)) return authenticateJwt(token);
      throw unauthenticated('invalid API key');
    },
  };
}
