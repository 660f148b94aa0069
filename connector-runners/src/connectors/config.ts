import { ValidationError } from '@keel/shared-events';

/**
 * Connector configuration (the `config` of ConnectorInstalled) and credentials (its `credentials`,
 * encrypted; decrypted only inside the runner). Credentials are a JSON object, or a bare string
 * that stands for the one secret the auth scheme needs (API key, token, password, client secret).
 *
 * http:     config { baseUrl?, headers?, timeoutMs?, auth? }
 *           auth   { type: "none" } | { type: "apiKey", header? = "X-API-Key", query? }
 *                | { type: "bearer" } | { type: "basic", username? }
 *                | { type: "oauth2", tokenUrl, clientId?, scope?, audience?, clientAuth?: "basic" | "body" }
 *           credentials { apiKey } | { token } | { username?, password } | { clientId?, clientSecret }
 * postgres: config { connectionString? (without password), schema? }
 *           credentials { connectionString } or { password }
 */
export type HttpAuth =
  | { type: 'none' }
  | { type: 'apiKey'; header?: string; query?: string }
  | { type: 'bearer' }
  | { type: 'basic'; username?: string }
  | {
      type: 'oauth2';
      tokenUrl: string;
      clientId?: string;
      scope?: string;
      audience?: string;
      clientAuth?: 'basic' | 'body';
    };

export interface HttpConnectorConfig {
  baseUrl?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  auth: HttpAuth;
}

export interface PostgresConnectorConfig {
  connectionString?: string;
  schema?: string;
}

export interface Credentials {
  apiKey?: string;
  token?: string;
  username?: string;
  password?: string;
  clientId?: string;
  clientSecret?: string;
  connectionString?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const optStr = (o: Obj, k: string, path: string): string | undefined => {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '')
    throw new ValidationError(`${path}.${k} must be a non-empty string`, `${path}.${k}`);
  return v;
};
const httpUrl = (v: string, field: string): string => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ValidationError(`${field} must be an absolute http(s) URL`, field);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new ValidationError(`${field} must be an absolute http(s) URL`, field);
  return v;
};

export function parseHttpConnectorConfig(raw: unknown): HttpConnectorConfig {
  const p = 'config';
  const c = raw ?? {};
  if (!isObj(c)) throw new ValidationError(`${p} must be an object`, p);
  const out: HttpConnectorConfig = { auth: { type: 'none' } };
  const baseUrl = optStr(c, 'baseUrl', p);
  if (baseUrl !== undefined) out.baseUrl = httpUrl(baseUrl, `${p}.baseUrl`);
  if (c.headers !== undefined) {
    if (!isObj(c.headers) || !Object.values(c.headers).every((v) => typeof v === 'string'))
      throw new ValidationError(`${p}.headers must map names to strings`, `${p}.headers`);
    out.headers = c.headers as Record<string, string>;
  }
  if (c.timeoutMs !== undefined) {
    if (typeof c.timeoutMs !== 'number' || !Number.isInteger(c.timeoutMs) || c.timeoutMs < 1 || c.timeoutMs > 120_000)
      throw new ValidationError(`${p}.timeoutMs must be a whole number from 1 to 120000`, `${p}.timeoutMs`);
    out.timeoutMs = c.timeoutMs;
  }
  if (c.auth !== undefined) {
    const a = c.auth;
    const ap = `${p}.auth`;
    if (!isObj(a)) throw new ValidationError(`${ap} must be an object`, ap);
    switch (a.type) {
      case 'none':
      case 'bearer':
        out.auth = { type: a.type };
        break;
      case 'apiKey': {
        const header = optStr(a, 'header', ap);
        const query = optStr(a, 'query', ap);
        if (header !== undefined && query !== undefined)
          throw new ValidationError(`${ap} takes header or query, not both`, ap);
        out.auth = { type: 'apiKey', ...(header !== undefined && { header }), ...(query !== undefined && { query }) };
        break;
      }
      case 'basic': {
        const username = optStr(a, 'username', ap);
        out.auth = { type: 'basic', ...(username !== undefined && { username }) };
        break;
      }
      case 'oauth2': {
        const tokenUrl = optStr(a, 'tokenUrl', ap);
        if (tokenUrl === undefined) throw new ValidationError(`${ap}.tokenUrl is required`, `${ap}.tokenUrl`);
        const clientAuth = a.clientAuth ?? 'basic';
        if (clientAuth !== 'basic' && clientAuth !== 'body')
          throw new ValidationError(`${ap}.clientAuth must be basic or body`, `${ap}.clientAuth`);
        const clientId = optStr(a, 'clientId', ap);
        const scope = optStr(a, 'scope', ap);
        const audience = optStr(a, 'audience', ap);
        out.auth = {
          type: 'oauth2',
          tokenUrl: httpUrl(tokenUrl, `${ap}.tokenUrl`),
          clientAuth,
          ...(clientId !== undefined && { clientId }),
          ...(scope !== undefined && { scope }),
          ...(audience !== undefined && { audience }),
        };
        break;
      }
      default:
        throw new ValidationError(`${ap}.type must be none, apiKey, bearer, basic or oauth2`, `${ap}.type`);
    }
  }
  return out;
}

export function parsePostgresConnectorConfig(raw: unknown): PostgresConnectorConfig {
  const p = 'config';
  const c = raw ?? {};
  if (!isObj(c)) throw new ValidationError(`${p} must be an object`, p);
  const out: PostgresConnectorConfig = {};
  const cs = optStr(c, 'connectionString', p);
  if (cs !== undefined) out.connectionString = cs;
  const schema = optStr(c, 'schema', p);
  if (schema !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema))
      throw new ValidationError(`${p}.schema must be a plain SQL identifier`, `${p}.schema`);
    out.schema = schema;
  }
  return out;
}

/** Decrypted credentials text → fields. A bare string is the scheme's one secret. */
export function parseCredentials(plain: string | undefined, auth: HttpAuth['type'] | 'postgres'): Credentials {
  if (plain === undefined || plain === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(plain);
  } catch {
    parsed = plain;
  }
  if (isObj(parsed)) {
    const out: Credentials = {};
    for (const k of [
      'apiKey',
      'token',
      'username',
      'password',
      'clientId',
      'clientSecret',
      'connectionString',
    ] as const)
      if (typeof parsed[k] === 'string') out[k] = parsed[k];
    return out;
  }
  const secret = typeof parsed === 'string' ? parsed : String(parsed);
  switch (auth) {
    case 'apiKey':
      return { apiKey: secret };
    case 'bearer':
      return { token: secret };
    case 'basic':
      return { password: secret };
    case 'oauth2':
      return { clientSecret: secret };
    case 'postgres':
      return secret.includes('://') ? { connectionString: secret } : { password: secret };
    default:
      return {};
  }
}
