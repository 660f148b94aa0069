import type { HttpStep } from '../flows/definition.ts';
import { compileExpression, renderTemplate, TransformError, type Json } from '../flows/transform.ts';
import type { HttpRequest } from '../http/client.ts';
import type { Credentials, HttpAuth, HttpConnectorConfig } from './config.ts';
import type { TokenCache } from './oauth2.ts';

/**
 * The HTTP request connector: turns a flow's http step, its connector and the step input into
 * one request. The URL template's values are URL-encoded and header values may not hold line
 * breaks, so a record's content cannot reshape the request.
 */
export class ConnectorConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectorConfigError';
  }
}

const NO_BODY = new Set(['GET', 'HEAD']);

export async function buildHttpRequest(
  step: HttpStep,
  connector: HttpConnectorConfig,
  input: Json,
  options: { idempotencyKey: string; defaultTimeoutMs: number; bindings?: Record<string, unknown> },
): Promise<HttpRequest> {
  const rendered = await renderTemplate(step.url, input, { encode: true, field: 'url', bindings: options.bindings });
  let url: URL;
  try {
    url = /^https?:\/\//i.test(rendered)
      ? new URL(rendered)
      : connector.baseUrl
        ? new URL(
            rendered.replace(/^\//, ''),
            connector.baseUrl.endsWith('/') ? connector.baseUrl : `${connector.baseUrl}/`,
          )
        : (() => {
            throw new ConnectorConfigError(`url "${step.url}" is relative and the connector has no baseUrl`);
          })();
  } catch (e) {
    if (e instanceof ConnectorConfigError) throw e;
    throw new TransformError(`url "${rendered}" is not a valid URL`, 'T0002');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConnectorConfigError(`url scheme ${url.protocol} is not allowed`);

  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...connector.headers, ...step.headers })) {
    const value = await renderTemplate(v, input, { encode: false, field: `headers.${k}`, bindings: options.bindings });
    if (/[\r\n]/.test(value) || /[\r\n:]/.test(k)) throw new TransformError(`header ${k} holds a line break`, 'T0003');
    headers[k.toLowerCase()] = value;
  }
  headers['idempotency-key'] = options.idempotencyKey;
  const req: HttpRequest = {
    method: step.method,
    url: url.toString(),
    headers,
    timeoutMs: step.timeoutMs ?? connector.timeoutMs ?? options.defaultTimeoutMs,
    captureBytes: 1024 * 1024,
  };
  if (!NO_BODY.has(step.method)) {
    const body = step.body ? await compileExpression(step.body, 'body').evaluate(input, options.bindings) : input;
    req.body = JSON.stringify(body ?? null);
    headers['content-type'] ??= 'application/json';
  }
  return req;
}

/**
 * Adds the connector's credentials to the request. With `tokens: undefined` (dry runs) nothing is
 * fetched: an OAuth2 token is shown as a placeholder, so a dry run calls no server at all.
 */
export async function applyAuth(
  req: HttpRequest,
  auth: HttpAuth,
  creds: Credentials,
  tokens: TokenCache | undefined,
): Promise<void> {
  switch (auth.type) {
    case 'none':
      return;
    case 'apiKey': {
      if (!creds.apiKey) throw new ConnectorConfigError('apiKey auth needs credentials.apiKey');
      if (auth.query) {
        const u = new URL(req.url);
        u.searchParams.set(auth.query, creds.apiKey);
        req.url = u.toString();
      } else req.headers[(auth.header ?? 'X-API-Key').toLowerCase()] = creds.apiKey;
      return;
    }
    case 'bearer':
      if (!creds.token) throw new ConnectorConfigError('bearer auth needs credentials.token');
      req.headers.authorization = `Bearer ${creds.token}`;
      return;
    case 'basic': {
      const user = creds.username ?? auth.username;
      if (user === undefined || creds.password === undefined)
        throw new ConnectorConfigError('basic auth needs a username and credentials.password');
      req.headers.authorization = `Basic ${Buffer.from(`${user}:${creds.password}`).toString('base64')}`;
      return;
    }
    case 'oauth2': {
      const clientId = creds.clientId ?? auth.clientId;
      if (!clientId || !creds.clientSecret)
        throw new ConnectorConfigError('oauth2 auth needs a clientId and credentials.clientSecret');
      const token = tokens
        ? await tokens.token({
            tokenUrl: auth.tokenUrl,
            clientId,
            clientSecret: creds.clientSecret,
            ...(auth.scope !== undefined && { scope: auth.scope }),
            ...(auth.audience !== undefined && { audience: auth.audience }),
            ...(auth.clientAuth !== undefined && { clientAuth: auth.clientAuth }),
          })
        : '<oauth2 token>';
      req.headers.authorization = `Bearer ${token}`;
      return;
    }
  }
}

/** Whether a status is worth retrying: overload, timeouts and server faults; other 4xx are the request's fault. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 425 || status === 429;
}
