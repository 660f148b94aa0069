import { ConfigError, envReader } from '../config.ts';

/**
 * Authentication settings from the environment (validated once at start):
 * - KEEL_ADMIN_KEY: the platform admin key (else generated in the data dir);
 * - KEEL_JWT_SECRET (HS256 shared secret) or KEEL_JWT_JWKS_URL (an SSO provider's JWKS):
 *   accept JWT bearer tokens; KEEL_JWT_ISSUER / KEEL_JWT_AUDIENCE are checked when set;
 *   KEEL_JWT_TENANT_CLAIM (default `keel_tenant`) names the tenant, KEEL_JWT_ROLE_CLAIM
 *   (default `keel_role`) the role, else the user's granted roles decide;
 * - KEEL_AUTH_CACHE_MS (default 1000): how long a key's row is reused before being read again,
 *   which bounds how late another process notices a revocation.
 */
export interface JwtConfig {
  secret?: string;
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
  tenantClaim: string;
  roleClaim: string;
  /** Accepted algorithms; default HS256 for a secret, RS256/ES256/EdDSA for JWKS. */
  algorithms?: string[];
}

export interface AuthConfig {
  jwt?: JwtConfig;
  cacheTtlMs: number;
}

export function loadAuthConfig(env: NodeJS.ProcessEnv = process.env): AuthConfig {
  const r = envReader(env);
  const secret = r.str('KEEL_JWT_SECRET');
  const jwksUrl = r.str('KEEL_JWT_JWKS_URL');
  if (secret && jwksUrl) r.problems.push('set either KEEL_JWT_SECRET or KEEL_JWT_JWKS_URL, not both');
  if (secret !== undefined && secret.length < 32) r.problems.push('KEEL_JWT_SECRET must be at least 32 characters');
  if (jwksUrl !== undefined) {
    try {
      const u = new URL(jwksUrl);
      if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error();
    } catch {
      r.problems.push(`KEEL_JWT_JWKS_URL="${jwksUrl}" must be an http(s) URL`);
    }
  }
  const cacheTtlMs = r.int('KEEL_AUTH_CACHE_MS', 1000, 0, 1000);
  if (r.problems.length) throw new ConfigError(r.problems);
  return {
    cacheTtlMs,
    jwt:
      secret || jwksUrl
        ? {
            secret,
            jwksUrl,
            issuer: r.str('KEEL_JWT_ISSUER'),
            audience: r.str('KEEL_JWT_AUDIENCE'),
            tenantClaim: r.str('KEEL_JWT_TENANT_CLAIM', 'keel_tenant')!,
            roleClaim: r.str('KEEL_JWT_ROLE_CLAIM', 'keel_role')!,
          }
        : undefined,
  };
}
