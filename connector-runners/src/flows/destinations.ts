import { applyUpsert, type SinkPools, type SinkResult, type UpsertStatement } from '../connectors/postgres-sink.ts';
import type { HttpClient, HttpRequest, HttpResult } from '../http/client.ts';
import { redactHeaders, redactUrl } from './redact.ts';
import type { Destinations } from './steps.ts';

/** Live destinations: the HTTP call and the upsert really happen. */
export function liveDestinations(http: HttpClient, pools: SinkPools): Destinations {
  return {
    mode: 'live',
    http: (req) => http.send(req),
    upsert: (cs, stmt, key, markerSchema) => applyUpsert(pools.pool(cs), stmt, key, markerSchema),
  };
}

/** What a dry run would have done at a destination, in place of doing it. */
export type CapturedEffect =
  | { kind: 'http'; method: string; url: string; headers: Record<string, string>; body?: string }
  | { kind: 'postgres'; statement: string; values: unknown[]; rows: number; idempotencyKey: string };

/**
 * Capturing destinations for dry runs: nothing leaves the process. HTTP calls answer 200 with an
 * empty JSON body (`captureStatus` can change that); upserts report as applied. The captured
 * requests are redacted as they are recorded (the Authorization header never appears).
 */
export function captureDestinations(
  options: { captureStatus?: number } = {},
): Destinations & { captured: CapturedEffect[] } {
  const captured: CapturedEffect[] = [];
  return {
    mode: 'capture',
    captured,
    http(req: HttpRequest): Promise<HttpResult> {
      const effect: CapturedEffect = {
        kind: 'http',
        method: req.method,
        url: redactUrl(req.url),
        headers: redactHeaders(req.headers),
      };
      if (req.body !== undefined) effect.body = req.body.toString();
      captured.push(effect);
      return Promise.resolve({
        kind: 'response',
        status: options.captureStatus ?? 200,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from('null'),
        responseBytes: 0,
        latencyMs: 0,
        requestBytes: req.body === undefined ? 0 : Buffer.byteLength(req.body),
      });
    },
    upsert(_cs: string, stmt: UpsertStatement, idempotencyKey: string): Promise<SinkResult> {
      captured.push({ kind: 'postgres', statement: stmt.text, values: stmt.values, rows: stmt.rows, idempotencyKey });
      return Promise.resolve({ applied: true, rows: stmt.rows });
    },
  };
}
