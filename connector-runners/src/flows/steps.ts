import { createHash } from 'node:crypto';
import {
  parseCredentials,
  parseHttpConnectorConfig,
  parsePostgresConnectorConfig,
  type Credentials,
} from '../connectors/config.ts';
import { applyAuth, buildHttpRequest, ConnectorConfigError, isRetryableStatus } from '../connectors/http-request.ts';
import { TokenError, type TokenCache } from '../connectors/oauth2.ts';
import {
  buildUpsert,
  isRetryablePgError,
  SinkInputError,
  sinkRows,
  type SinkResult,
  type UpsertStatement,
} from '../connectors/postgres-sink.ts';
import { headerValue, type HttpRequest, type HttpResult } from '../http/client.ts';
import { parseRetryAfter } from '../retry/backoff.ts';
import type { FlowStep, HttpStep, PostgresStep } from './definition.ts';
import { fingerprint, redact, redactHeaders, redactUrl } from './redact.ts';
import { compileExpression, compileMapping, TransformError, type Json } from './transform.ts';

/**
 * Runs one flow step. The same code serves live runs and dry runs: only the `Destinations`
 * differ (perform vs capture), so a dry run shows exactly what a live run would have sent.
 */
export interface ConnectorRecord {
  connectorId: string;
  kind: string;
  config: unknown;
  /** Encrypted. */
  credentials?: string;
  status: 'active' | 'paused' | 'removed';
}

export interface Destinations {
  readonly mode: 'live' | 'capture';
  http(req: HttpRequest): Promise<HttpResult>;
  upsert(
    connectionString: string,
    stmt: UpsertStatement,
    idempotencyKey: string,
    markerSchema: string | undefined,
  ): Promise<SinkResult>;
}

export interface StepDeps {
  connector(tenantId: string, connectorId: string): Promise<ConnectorRecord | undefined>;
  /** Decrypts a tenant secret. Never log what it returns. */
  openSecret(tenantId: string, ciphertext: string): Promise<string>;
  destinations: Destinations;
  /** Absent in dry runs: no token server is called. */
  tokens?: TokenCache;
  defaultTimeoutMs: number;
  /**
   * Wraps the call to a destination with its circuit breaker and concurrency limit. Answers
   * `{ran: false}` when the breaker is open or the destination is at its limit.
   */
  guard<T>(
    destination: string,
    call: () => Promise<{ value: T; healthy: boolean }>,
  ): Promise<{ ran: true; value: T } | { ran: false; retryAt: number; reason: string }>;
}

export interface StepContext {
  tenantId: string;
  runId: string;
  stepIndex: number;
  attempt: number;
  /** The triggering event envelope (bound as `$trigger`). */
  trigger: Json;
  /** Outputs of the steps before this one (bound as `$steps`). */
  steps: Json[];
  captureBodies: boolean;
}

export type StepOutcome =
  | { kind: 'succeeded'; output: Json | undefined; summary: Json }
  | { kind: 'failed'; retryable: boolean; error: string; summary?: Json; retryAfterMs?: number }
  /** Not attempted (breaker open, destination busy, connector paused): try again at `retryAt` without spending an attempt. */
  | { kind: 'deferred'; retryAt: number; reason: string };

/** Stable across retries and redeliveries of the same step of the same run. */
export function stepIdempotencyKey(runId: string, stepIndex: number): string {
  return `${runId}:${stepIndex}`;
}

const bytesOf = (v: unknown): number => (v === undefined ? 0 : Buffer.byteLength(JSON.stringify(v)));

export async function executeStep(step: FlowStep, input: Json, ctx: StepContext, deps: StepDeps): Promise<StepOutcome> {
  try {
    switch (step.type) {
      case 'transform':
        return await transformStep(step, input, ctx);
      case 'http':
        return await httpStep(step, input, ctx, deps);
      case 'postgres':
        return await postgresStep(step, input, ctx, deps);
    }
  } catch (e) {
    if (e instanceof TransformError || e instanceof ConnectorConfigError || e instanceof SinkInputError)
      return { kind: 'failed', retryable: false, error: e.message };
    if (e instanceof TokenError) return { kind: 'failed', retryable: e.retryable, error: e.message };
    if ((e as { code?: string }).code === 'VALIDATION_FAILED')
      return { kind: 'failed', retryable: false, error: (e as Error).message };
    throw e;
  }
}

async function transformStep(
  step: Extract<FlowStep, { type: 'transform' }>,
  input: Json,
  ctx: StepContext,
): Promise<StepOutcome> {
  const compiled =
    step.expression !== undefined
      ? compileExpression(step.expression, 'expression')
      : compileMapping(step.mapping!, 'mapping');
  const output = await compiled.evaluate(input, { trigger: ctx.trigger, steps: ctx.steps });
  const summary: Record<string, Json> = {
    type: 'transform',
    inputBytes: bytesOf(input),
    outputBytes: bytesOf(output),
    outputHash: fingerprint(output ?? null),
  };
  if (output === undefined) summary.skipped = true;
  if (ctx.captureBodies) summary.output = redact(output ?? null) as Json;
  return { kind: 'succeeded', output, summary };
}

async function loadConnector(
  deps: StepDeps,
  ctx: StepContext,
  connectorId: string,
  kind: string,
): Promise<{ config: unknown; plain?: string } | StepOutcome> {
  const c = await deps.connector(ctx.tenantId, connectorId);
  if (!c || c.status === 'removed')
    return { kind: 'failed', retryable: false, error: `connector ${connectorId} is not installed` };
  if (c.kind !== kind)
    return {
      kind: 'failed',
      retryable: false,
      error: `connector ${connectorId} is a ${c.kind} connector, the step needs ${kind}`,
    };
  if (c.status === 'paused')
    return { kind: 'deferred', retryAt: Date.now() + 10_000, reason: `connector ${connectorId} is paused` };
  const plain = c.credentials ? await deps.openSecret(ctx.tenantId, c.credentials) : undefined;
  return plain === undefined ? { config: c.config } : { config: c.config, plain };
}

async function httpStep(step: HttpStep, input: Json, ctx: StepContext, deps: StepDeps): Promise<StepOutcome> {
  const loaded = await loadConnector(deps, ctx, step.connectorId, 'http');
  if ('kind' in loaded) return loaded;
  let config;
  try {
    config = parseHttpConnectorConfig(loaded.config);
  } catch (e) {
    return { kind: 'failed', retryable: false, error: `connector ${step.connectorId}: ${(e as Error).message}` };
  }
  const creds: Credentials = parseCredentials(loaded.plain, config.auth.type);
  const req = await buildHttpRequest(step, config, input, {
    idempotencyKey: stepIdempotencyKey(ctx.runId, ctx.stepIndex),
    defaultTimeoutMs: deps.defaultTimeoutMs,
    bindings: { trigger: ctx.trigger, steps: ctx.steps },
  });
  // The summary is taken before credentials are added, so no secret can reach it.
  const capture = ctx.captureBodies || step.captureBodies === true;
  const request: Record<string, Json> = {
    method: req.method,
    url: redactUrl(req.url),
    headers: redactHeaders(req.headers),
    bytes: req.body ? Buffer.byteLength(req.body) : 0,
  };
  if (capture && req.body) request.body = redact(safeParse(req.body.toString())) as Json;
  await applyAuth(req, config.auth, creds, deps.destinations.mode === 'live' ? deps.tokens : undefined);

  const destination = `${ctx.tenantId}|${new URL(req.url).origin}`;
  const guarded = await deps.guard(destination, async () => {
    const res = await deps.destinations.http(req);
    return {
      value: res,
      healthy: res.kind === 'response' && !(res.status >= 500 || res.status === 429 || res.status === 408),
    };
  });
  if (!guarded.ran) return { kind: 'deferred', retryAt: guarded.retryAt, reason: guarded.reason };
  const res = guarded.value;
  if (res.kind !== 'response') {
    return {
      kind: 'failed',
      retryable: true,
      error: res.error,
      summary: { type: 'http', request, response: { error: res.error, latencyMs: res.latencyMs } },
    };
  }
  const response: Record<string, Json> = { status: res.status, latencyMs: res.latencyMs, bytes: res.responseBytes };
  const contentType = headerValue(res.headers, 'content-type') ?? '';
  const text = res.body.toString('utf8');
  const parsed: Json = contentType.includes('json') ? safeParse(text) : text === '' ? null : text;
  if (capture) response.body = redact(parsed) as Json;
  const summary: Json = { type: 'http', request, response };
  if (res.status >= 200 && res.status < 300) return { kind: 'succeeded', output: parsed, summary };
  if (res.status === 401 && config.auth.type === 'oauth2' && deps.tokens) {
    // The cached token may have been revoked early: the retry fetches a fresh one.
    const clientId = creds.clientId ?? config.auth.clientId;
    if (clientId && creds.clientSecret)
      deps.tokens.invalidate({
        tokenUrl: config.auth.tokenUrl,
        clientId,
        clientSecret: creds.clientSecret,
        ...(config.auth.scope !== undefined && { scope: config.auth.scope }),
        ...(config.auth.audience !== undefined && { audience: config.auth.audience }),
      });
    return { kind: 'failed', retryable: ctx.attempt < 2, error: 'destination answered 401', summary };
  }
  const retryAfterMs = parseRetryAfter(headerValue(res.headers, 'retry-after'));
  return {
    kind: 'failed',
    retryable: isRetryableStatus(res.status),
    error: `destination answered ${res.status}`,
    summary,
    ...(retryAfterMs !== undefined && { retryAfterMs }),
  };
}

async function postgresStep(step: PostgresStep, input: Json, ctx: StepContext, deps: StepDeps): Promise<StepOutcome> {
  const loaded = await loadConnector(deps, ctx, step.connectorId, 'postgres');
  if ('kind' in loaded) return loaded;
  let config;
  try {
    config = parsePostgresConnectorConfig(loaded.config);
  } catch (e) {
    return { kind: 'failed', retryable: false, error: `connector ${step.connectorId}: ${(e as Error).message}` };
  }
  const creds = parseCredentials(loaded.plain, 'postgres');
  let cs = creds.connectionString ?? config.connectionString;
  if (!cs) return { kind: 'failed', retryable: false, error: `connector ${step.connectorId} has no connection string` };
  if (!creds.connectionString && creds.password) {
    const u = new URL(cs);
    u.password = encodeURIComponent(creds.password);
    cs = u.toString();
  }
  const rows = sinkRows(input);
  const stmt = buildUpsert(step, rows, config.schema);
  const table = `${step.schema ?? config.schema ?? 'public'}.${step.table}`;
  let host = 'db';
  try {
    const u = new URL(cs);
    host = `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    /* a key/value connection string: one destination per connector */
    host = step.connectorId;
  }
  const destination = `${ctx.tenantId}|postgres://${host}`;
  const started = performance.now();
  type Attempt = { ok: true; r: SinkResult } | { ok: false; e: unknown };
  const guarded = await deps.guard<Attempt>(destination, async () => {
    try {
      const r = await deps.destinations.upsert(
        cs,
        stmt,
        stepIdempotencyKey(ctx.runId, ctx.stepIndex),
        step.schema ?? config.schema,
      );
      return { value: { ok: true, r }, healthy: true };
    } catch (e) {
      return { value: { ok: false, e }, healthy: !isRetryablePgError(e) };
    }
  });
  if (!guarded.ran) return { kind: 'deferred', retryAt: guarded.retryAt, reason: guarded.reason };
  const latencyMs = Math.round((performance.now() - started) * 10) / 10;
  const summary: Record<string, Json> = {
    type: 'postgres',
    table,
    rows: stmt.rows,
    latencyMs,
    statementHash: createHash('sha256')
      .update(stmt.text)
      .update(JSON.stringify(stmt.values))
      .digest('hex')
      .slice(0, 16),
  };
  if (ctx.captureBodies) summary.rowsWritten = redact(rows) as Json;
  const attempt = guarded.value;
  if (!attempt.ok) {
    const e = attempt.e as Error & { code?: string };
    return {
      kind: 'failed',
      retryable: isRetryablePgError(e),
      error: `postgres ${e.code ?? ''} ${e.message}`.replace(/\s+/g, ' ').trim(),
      summary,
    };
  }
  summary.applied = attempt.r.applied;
  if (deps.destinations.mode === 'capture') summary.captured = true;
  return { kind: 'succeeded', output: input, summary };
}

function safeParse(text: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}
