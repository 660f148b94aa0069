import type { Worker } from 'node:worker_threads';
import { startTsWorker } from '@keel/shared-events';
import { Agent, request } from 'undici';
import type { FromHttpThread, ToHttpThread } from './client-thread.ts';
import { DESTINATION_NOT_ALLOWED, isPrivateAddress, publicOnlyLookup } from './destinations.ts';

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
  /**
   * false: calls to loopback, private and link-local addresses fail as connection failures with
   * code DESTINATION_NOT_ALLOWED (see destinations.ts). Default true.
   */
  allowPrivateNetworks?: boolean;
}

export interface HttpClient {
  send(req: HttpRequest): Promise<HttpResult>;
  /** Closes every connection; calls still in flight end as connection failures (the runners hand such work back first). */
  close(): Promise<void>;
}

export function createHttpClient(options: HttpClientOptions = {}): HttpClient {
  const maxResponseBytes = options.maxResponseBytes ?? 10 * 2 ** 20;
  const publicOnly = options.allowPrivateNetworks === false;
  const agent = new Agent({
    connections: options.connectionsPerOrigin ?? 64,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 10_000,
    pipelining: 1,
    ...(publicOnly && { connect: { lookup: publicOnlyLookup as never } }),
  });
  return {
    send: (req) => (publicOnly ? literalRefused(req) : undefined) ?? send(agent, req, maxResponseBytes),
    close: () => agent.destroy(),
  };
}

/**
 * The same client on a worker thread of its own. A delivery's HTTP exchange (undici's request
 * building, parsing, socket writes and reads) was about a third of a webhook runner's CPU, all on
 * the thread that also takes in events, claims work and records outcomes; here it runs beside
 * that thread, on another core. Calls and results cross in batches (one message per event-loop
 * turn each way). The thread starts on first use; if it dies, the calls in flight end as
 * connection failures (as any lost connection: the caller retries) and the next call starts a
 * new one.
 */
export function threadHttpClient(options: HttpClientOptions = {}): HttpClient {
  let worker: Worker | undefined;
  let nextId = 1;
  const pending = new Map<number, { resolve: (r: HttpResult) => void; started: number; bytes: number }>();
  let queued: { id: number; req: HttpRequest }[] = [];
  let flushing = false;
  let closing: Promise<void> | undefined;

  const failAll = (error: string) => {
    for (const p of pending.values())
      p.resolve({ kind: 'connection', error, latencyMs: performance.now() - p.started, requestBytes: p.bytes });
    pending.clear();
  };

  const start = (): Worker => {
    if (worker) return worker;
    const w = startTsWorker(new URL('./client-thread.ts', import.meta.url), { workerData: options });
    w.on('message', (m: FromHttpThread) => {
      if (!('results' in m)) return;
      for (const { id, result } of m.results) {
        const p = pending.get(id);
        if (!p) continue;
        pending.delete(id);
        // a Buffer crosses as a plain Uint8Array
        if (result.kind === 'response')
          result.body = Buffer.from(result.body.buffer, result.body.byteOffset, result.body.byteLength);
        p.resolve(result);
      }
    });
    w.on('error', (err) => {
      if (worker === w) worker = undefined;
      failAll(`HTTP client thread failed: ${err.message}`);
    });
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(`HTTP client thread exited (${code})`);
    });
    worker = w;
    return w;
  };

  const flush = () => {
    flushing = false;
    if (closing) return; // close() answers what is still queued
    const calls = queued;
    queued = [];
    if (calls.length) start().postMessage({ op: 'send', calls } satisfies ToHttpThread);
  };

  return {
    send(req) {
      if (closing)
        return Promise.resolve({ kind: 'connection', error: 'HTTP client closed', latencyMs: 0, requestBytes: 0 });
      const id = nextId++;
      return new Promise<HttpResult>((resolve) => {
        const bytes = req.body === undefined ? 0 : Buffer.byteLength(req.body);
        pending.set(id, { resolve, started: performance.now(), bytes });
        queued.push({ id, req });
        if (!flushing) {
          flushing = true;
          setImmediate(flush);
        }
      });
    },
    close() {
      closing ??= (async () => {
        const w = worker;
        if (w)
          await new Promise<void>((resolve) => {
            const done = (m: FromHttpThread) => {
              if ('closed' in m) resolve();
            };
            w.on('message', done);
            w.once('exit', () => resolve());
            w.postMessage({ op: 'close' } satisfies ToHttpThread);
          });
        await w?.terminate();
        queued = [];
        failAll('HTTP client closed');
      })();
      return closing;
    },
  };
}

/** An IP literal in the URL is connected to without a lookup: checked here instead. */
function literalRefused(req: HttpRequest): Promise<HttpResult> | undefined {
  let host: string;
  try {
    host = new URL(req.url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined; // undici reports the bad URL
  }
  if (!isPrivateAddress(host)) return undefined;
  return Promise.resolve({
    kind: 'connection',
    code: DESTINATION_NOT_ALLOWED,
    error: `${DESTINATION_NOT_ALLOWED}: ${host} is a private or local address; outbound calls there are not allowed`,
    latencyMs: 0,
    requestBytes: 0,
  });
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
