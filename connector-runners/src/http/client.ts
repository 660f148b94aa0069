import { Agent, request } from 'undici';

/**
 * The HTTP client every outbound call of the runners goes through (webhooks and HTTP connector
 * steps). undici's `request` over a keep-alive Agent: one connection pool per origin, capped, so
 * the per-destination concurrency limit and the connection count agree.
 *
 * Every failure mode comes back as a value, never a throw: a status, a timeout (no complete
 * answer within `timeoutMs`, connecting included), or a connection failure (refused, reset,
 * closed mid-answer). Retrying is the caller's decision.
 */
export interface HttpRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** Deadline for the whole exchange: connect, send, headers and body. */
  timeoutMs: number;
  /** Bytes of the response body to keep (for summaries); the rest is read and counted. Default 0. */
  captureBytes?: number;
}

interface Timing {
  latencyMs: number;
  requestBytes: number;
}

export type HttpResult =
  | (Timing & {
      kind: 'response';
      status: number;
      headers: Record<string, string | string[] | undefined>;
      /** The first `captureBytes` of the body. */
      body: Buffer;
      responseBytes: number;
    })
  | (Timing & { kind: 'timeout'; error: string })
  | (Timing & { kind: 'connection'; error: string; code?: string });

export interface HttpClientOptions {
  /** Connections per origin (default 64). */
  connectionsPerOrigin?: number;
  keepAliveTimeoutMs?: number;
  /** Answers larger than this are cut off and count as a connection failure (default 10 MiB). */
  maxResponseBytes?: number;
}

export interface HttpClient {
  send(req: HttpRequest): Promise<HttpResult>;
  /** Closes every connection; calls still in flight end as connection failures (the runners hand such work back first). */
  close(): Promise<void>;
}

export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  const maxResponseBytes = options.maxResponseBytes ?? 10 * 2 ** 20;
  const agent = new Agent({
    connections: options.connectionsPerOrigin ?? 64,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 10_000,
    pipelining: 1,
  });
  return {
    send: (req) => send(agent, req, maxResponseBytes),
    close: () => agent.destroy(),
  };
}

async function send(agent: Agent, req: HttpRequest, maxResponseBytes: number): Promise<HttpResult> {
  const requestBytes = req.body === undefined ? 0 : Buffer.byteLength(req.body);
  const started = performance.now();
  const elapsed = (): number => Math.round((performance.now() - started) * 10) / 10;
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, req.timeoutMs);
  try {
    const res = await request(req.url, {
      dispatcher: agent,
      method: req.method as 'POST',
      headers: req.headers,
      body: req.body,
      signal: controller.signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
    });
    const keep = req.captureBytes ?? 0;
    const chunks: Buffer[] = [];
    let kept = 0;
    let responseBytes = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      responseBytes += chunk.length;
      if (responseBytes > maxResponseBytes) {
        res.body.destroy();
        return {
          kind: 'connection',
          error: `response larger than ${maxResponseBytes} bytes`,
          latencyMs: elapsed(),
          requestBytes,
        };
      }
      if (kept < keep) {
        const part = chunk.subarray(0, keep - kept);
        chunks.push(part);
        kept += part.length;
      }
    }
    return {
      kind: 'response',
      status: res.statusCode,
      headers: res.headers,
      body: Buffer.concat(chunks),
      responseBytes,
      latencyMs: elapsed(),
      requestBytes,
    };
  } catch (e) {
    const err = e as Error & { code?: string; cause?: { code?: string; message?: string } };
    const code = err.code ?? err.cause?.code;
    if (
      timedOut ||
      code === 'UND_ERR_HEADERS_TIMEOUT' ||
      code === 'UND_ERR_BODY_TIMEOUT' ||
      code === 'UND_ERR_CONNECT_TIMEOUT'
    ) {
      return { kind: 'timeout', error: `no answer within ${req.timeoutMs} ms`, latencyMs: elapsed(), requestBytes };
    }
    return { kind: 'connection', error: describe(err), code, latencyMs: elapsed(), requestBytes };
  } finally {
    clearTimeout(timer);
  }
}

function describe(err: Error & { code?: string; cause?: { code?: string; message?: string } }): string {
  const code = err.code ?? err.cause?.code;
  const msg =
    err.cause?.message && err.cause.message !== err.message ? `${err.message}: ${err.cause.message}` : err.message;
  return code ? `${code}: ${msg}` : msg;
}

/** Header lookup that tolerates undici's lower-cased keys and array values. */
export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
