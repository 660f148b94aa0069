import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import type { JwtConfig } from './config.ts';

/**
 * Verifies bearer JWTs of SSO-issued identities, with a shared secret (HS256) or the
 * provider's JWKS (fetched and cached by jose, refreshed on an unknown `kid`).
 */
export interface VerifiedJwt {
  subject: string;
  tenantId?: string;
  role?: string;
  claims: JWTPayload;
}

export type JwtVerifier = (token: string) => Promise<VerifiedJwt>;

const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export function looksLikeJwt(token: string): boolean {
  return token.length < 16384 && JWT_RE.test(token);
}

export function createJwtVerifier(config: JwtConfig): JwtVerifier {
  const secret = config.secret ? new TextEncoder().encode(config.secret) : undefined;
  const jwks = !secret && config.jwksUrl
    ? createRemoteJWKSet(new URL(config.jwksUrl), { timeoutDuration: 3000, cooldownDuration: 30_000 })
    : undefined;
  if (!secret && !jwks) throw new Error('JWT verification needs a secret or a JWKS URL');
  const algorithms = config.algorithms ?? (secret ? ['HS256', 'HS384', 'HS512'] : ['RS256', 'PS256', 'ES256', 'EdDSA']);
  return async (token) => {
    const options = { issuer: config.issuer, audience: config.audience, algorithms, requiredClaims: ['sub', 'exp'] };
    const { payload } = secret ? await jwtVerify(token, secret, options) : await jwtVerify(token, jwks!, options);
    const tenant = payload[config.tenantClaim];
    const role = payload[config.roleClaim];
    return {
      subject: payload.sub!,
      tenantId: typeof tenant === 'string' ? tenant : undefined,
      role: typeof role === 'string' ? role : undefined,
      claims: payload,
    };
  };
}
