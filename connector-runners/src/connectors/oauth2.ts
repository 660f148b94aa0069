import { createHash } from 'node:crypto';
import type { HttpClient } from '../http/client.ts';

/**
 * OAuth2 client-credentials tokens (RFC 6749 §4.4), cached per (token URL, client, scope,
 * audience, secret) until shortly before they expire. Concurrent callers share one token request
 * (a burst of deliveries must not stampede the token server). A destination answering 401 makes
 * the caller `invalidate` the token and fetch a new one on its retry.
 */
export interface OAuth2Client {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
  audience?: string;
  /** client_secret_basic (default, RFC 6749 §2.3.1) or client_secret_post. */
  clientAuth?: 'basic' | 'body';
}

/** The token server refused or failed; `retryable` is false for a 4xx (bad client credentials). */
export class TokenError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface TokenCache {
  token(client: OAuth2Client): Promise<string>;
  invalidate(client: OAuth2Client): void;
  /** Token requests made (for tests and metrics). */
  readonly fetches: number;
}

interface Entry {
  token: string;
  expiresAt: number;
}

export function createTokenCache(
  http: HttpClient,
  options: { timeoutMs?: number; refreshEarlyMs?: number; now?: () => number } = {},
): TokenCache {
  const now = options.now ?? Date.now;
  const refreshEarlyMs = options.refreshEarlyMs ?? 30_000;
  const entries = new Map<string, Entry>();
  const inflight = new Map<string, Promise<string>>();
  let fetches = 0;
  const keyOf = (c: OAuth2Client): string =>
    createHash('sha256')
      .update(JSON.stringify([c.tokenUrl, c.clientId, c.scope ?? '', c.audience ?? '', c.clientSecret]))
      .digest('hex');

  async function fetchToken(c: OAuth2Client, key: string): Promise<string> {
    fetches++;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (c.scope) form.set('scope', c.scope);
    if (c.audience) form.set('audience', c.audience);
    const headers: Record<string, string> = {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    };
    if ((c.clientAuth ?? 'basic') === 'basic') {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
      const enc = (s: string): string => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(c.clientId)}:${enc(c.clientSecret)}`).toString('base64')}`;
    } else {
      form.set('client_id', c.clientId);
      form.set('client_secret', c.clientSecret);
    }
    const started = now();
    const res = await http.send({
      method: 'POST',
      url: c.tokenUrl,
      headers,
      body: form.toString(),
      timeoutMs: options.timeoutMs ?? 10_000,
      captureBytes: 64 * 1024,
    });
    if (res.kind !== 'response') throw new TokenError(`token request failed: ${res.error}`, true);
    if (res.status < 200 || res.status >= 300) {
      let detail = '';
      try {
        const b = JSON.parse(res.body.toString('utf8')) as { error?: unknown };
        if (typeof b.error === 'string') detail = `: ${b.error}`;
      } catch {
        /* a non-JSON error body says nothing we can use */
      }
      const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
      throw new TokenError(`token endpoint answered ${res.status}${detail}`, retryable, res.status);
    }
    let body: { access_token?: unknown; expires_in?: unknown; token_type?: unknown };
    try {
      body = JSON.parse(res.body.toString('utf8')) as typeof body;
    } catch {
      throw new TokenError('token endpoint answered with a body that is not JSON', false, res.status);
    }
    if (typeof body.access_token !== 'string' || body.access_token === '')
      throw new TokenError('token endpoint answer has no access_token', false, res.status);
    if (typeof body.token_type === 'string' && body.token_type.toLowerCase() !== 'bearer')
      throw new TokenError(`unsupported token_type ${body.token_type}`, false, res.status);
    const ttlMs = (typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 3600) * 1000;
    // Renew early, but never make a short-lived token count as already expired.
    const early = Math.min(refreshEarlyMs, ttlMs / 2);
    entries.set(key, { token: body.access_token, expiresAt: started + ttlMs - early });
    return body.access_token;
  }

  return {
    get fetches() {
      return fetches;
    },
    token(c) {
      const key = keyOf(c);
      const e = entries.get(key);
      if (e && e.expiresAt > now()) return Promise.resolve(e.token);
      let p = inflight.get(key);
      if (!p) {
        p = fetchToken(c, key).finally(() => inflight.delete(key));
        inflight.set(key, p);
      }
      return p;
    },
    invalidate(c) {
      entries.delete(keyOf(c));
    },
  };
}
