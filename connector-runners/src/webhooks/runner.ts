import { randomUUID } from 'node:crypto';
import {
  streamName,
  type BatchAck,
  type BusBatch,
  type NewEvent,
  type RecordedEvent,
  type StreamAppend,
} from '@keel/shared-events';
import type pg from 'pg';
import { DESTINATION_NOT_ALLOWED } from '../http/destinations.ts';
import { failpoint } from '../failpoints.ts';
import { matchInLogOrder } from '../intake.ts';
import { headerValue } from '../http/client.ts';
import { deliveryIdOf, outcomeEventId } from '../ids.ts';
import { decideRetry, parseRetryAfter } from '../retry/backoff.ts';
import { guardedCall, type RunnerServices } from '../services.ts';
import { applyEndpointEvent, applyTenantEvent, ENDPOINT_EVENTS, TENANT_EVENTS } from '../state/apply.ts';
import { groupCommitter, startWorkLoop, type WorkLoop } from '../work-loop.ts';
import { claimDue, handBack, pruneFinished, settleRunning, track, type WorkTable } from '../work-queue.ts';
import { signatureHeader } from './signature.ts';

/**
 * WebhookDeliveryRunner: consumer group `runner-webhooks`.
 *
 * Intake (the bus handler) only writes: it keeps the endpoint registry current and turns each
 * matching event into a delivery row, in one transaction per batch, then acknowledges the batch.
 * Deliveries happen outside the bus handler, so a slow or failing endpoint never holds a
 * partition; the freshly written rows are handed straight to the dispatcher (no poll delay), and
 * retries wait as rows with a due time that the dispatcher polls.
 *
 * Every attempt's outcome is appended as an event (causation = the triggering event) and the
 * row updated, in group commits. A runner that dies mid-delivery leaves its rows leased; when the
 * lease runs out another runner (or the restarted one) delivers again with the same
 * Idempotency-Key (the delivery id, derived from webhook id + event id).
 */
export const WEBHOOK_GROUP = 'runner-webhooks';

/** Delivery outcomes are never delivered themselves: an endpoint subscribed to them would feed itself forever. */
export const DELIVERY_OUTCOMES: readonly string[] = [
  'WebhookDeliverySucceeded',
  'WebhookDeliveryFailed',
  'WebhookDeliveryDeadLettered',
];
const NEVER_DELIVERED = new Set([...DELIVERY_OUTCOMES, 'WebhookDeliveryRedriven']);
const ACTOR = { kind: 'system' as const, id: WEBHOOK_GROUP };

/**
 * Delivery outcomes go to the endpoint's own stream, `webhook-<tenant>-<webhookId>`, beside its
 * registration: the write side folds that stream to check that a redrive names dead-lettered
 * deliveries, and the stream's history is the endpoint's delivery log.
 */
export function webhookStream(tenantId: string, webhookId: string): string {
  return streamName('webhook', tenantId, webhookId);
}

/** Fields that hold secrets (even encrypted, or hashed) never leave in a delivery. */
const SECRET_FIELDS = new Set(['secret', 'credentials', 'secretHash']);

/**
 * The JSON body an endpoint receives: the event envelope. Personal fields stay as stored (i.e.
 * encrypted); secret-bearing fields of integration events are replaced by "[redacted]".
 */
export function deliveryBody(e: RecordedEvent): string {
  const data = Object.keys(e.data).some((k) => SECRET_FIELDS.has(k))
    ? Object.fromEntries(Object.entries(e.data).map(([k, v]) => [k, SECRET_FIELDS.has(k) ? '[redacted]' : v]))
    : e.data;
  return JSON.stringify({
    eventId: e.eventId,
    type: e.type,
    schemaVersion: e.schemaVersion,
    tenantId: e.tenantId,
    streamId: e.streamId,
    streamPosition: e.streamPosition,
    globalPosition: e.globalPosition,
    occurredAt: e.occurredAt.toISOString(),
    recordedAt: e.recordedAt.toISOString(),
    actor: e.actor,
    correlationId: e.correlationId,
    causationId: e.causationId,
    data,
  });
}

interface DeliveryRow {
  delivery_id: string;
  tenant_id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  event_recorded_at: Date;
  correlation_id: string | null;
  body: string;
  attempt: number;
  attempts_base: number;
  lease_token: string;
  created_at: Date;
}

interface EndpointRow {
  tenant_id: string;
  webhook_id: string;
  url: string;
  secret: string;
  status: 'active' | 'removed';
  tenant_status: 'active' | 'suspended' | 'erased' | null;
}

type RowState = 'pending' | 'succeeded' | 'dead';

interface Outcome {
  row: DeliveryRow;
  events: NewEvent[];
  state: RowState;
  attempt: number;
  dueAt?: Date;
  status?: number;
  error?: string;
}

const RETURNING = `delivery_id, tenant_id, webhook_id, event_id, event_type, event_recorded_at, correlation_id, body, attempt, attempts_base, lease_token, created_at`;
const DELIVERIES: WorkTable = { table: 'keel_runner_deliveries', id: 'delivery_id', alias: 'd', returning: RETURNING };

export interface WebhookRunner {
  /** The bus handler for the `runner-webhooks` group. */
  intake(batch: BusBatch): Promise<BatchAck | void>;
  start(): void;
  /** Stops taking work; waits up to the grace period for deliveries in flight, then hands the rest back. */
  stop(): Promise<void>;
  /** Deliveries this process holds right now. */
  inFlight(): number;
}

export function createWebhookRunner(svc: RunnerServices): WebhookRunner {
  const { pool, store, config, logger } = svc;
  const log = logger.child({ runner: WEBHOOK_GROUP });
  const guard = guardedCall(svc);
  /** deliveryId → the lease token this process holds it under. */
  const held = new Map<string, string>();
  const running = new Set<Promise<void>>();
  const secretCache = new Map<string, { plain: string; at: number }>();
  let loop: WorkLoop | undefined;
  let stopping = false;
  /** Set once in-flight work was handed back: late outcomes belong to whoever takes the work over. */
  let discard = false;
  let lastPrune = 0;

  const leaseInterval = `${config.leaseMs} milliseconds`;

  // ------------------------------------------------------------------------------------ intake
  async function intake(batch: BusBatch): Promise<BatchAck | void> {
    const touchesState = batch.events.some(
      (e) =>
        (TENANT_EVENTS as readonly string[]).includes(e.type) ||
        (ENDPOINT_EVENTS as readonly string[]).includes(e.type) ||
        e.type === 'WebhookDeliveryRedriven',
    );
    const client = await pool.connect();
    let created: DeliveryRow[] = [];
    let redriven = 0;
    try {
      // Most batches only make deliveries: one statement, no transaction around it.
      if (touchesState) await client.query('begin');
      // Endpoint changes apply in log order: an event only goes to the endpoints that existed when it was recorded.
      const fresh = await matchInLogOrder(batch.events, {
        change: (e) =>
          (TENANT_EVENTS as readonly string[]).includes(e.type)
            ? () => applyTenantEvent(client, e)
            : (ENDPOINT_EVENTS as readonly string[]).includes(e.type)
              ? () => applyEndpointEvent(client, e)
              : e.type === 'WebhookDeliveryRedriven'
                ? async () => (redriven += await redrive(client, e))
                : undefined,
        matches: (e) => !NEVER_DELIVERED.has(e.type),
        match: (run) => matchEndpoints(client, run),
      });
      created = await insertDeliveries(client, fresh);
      if (touchesState) await client.query('commit');
    } catch (err) {
      if (touchesState) await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    failpoint('intake-after-commit');
    if (created.length) void dispatch(created.filter((r) => r.lease_token));
    if (redriven) loop?.kick();
  }

  async function matchEndpoints(
    q: pg.PoolClient,
    events: RecordedEvent[],
  ): Promise<{ e: RecordedEvent; webhookIds: string[] }[]> {
    const tenants = [...new Set(events.map((e) => e.tenantId))];
    const { rows } = await q.query<{ tenant_id: string; webhook_id: string; event_types: string[] }>(
      `select tenant_id, webhook_id, event_types from keel_runner_webhook_endpoints where tenant_id = any($1) and status = 'active'`,
      [tenants],
    );
    if (!rows.length) return [];
    const byTenant = new Map<string, typeof rows>();
    for (const r of rows) byTenant.set(r.tenant_id, [...(byTenant.get(r.tenant_id) ?? []), r]);
    const out: { e: RecordedEvent; webhookIds: string[] }[] = [];
    for (const e of events) {
      const ids = (byTenant.get(e.tenantId) ?? [])
        .filter((r) => r.event_types.includes(e.type) || r.event_types.includes('*'))
        .map((r) => r.webhook_id);
      if (ids.length) out.push({ e, webhookIds: ids });
    }
    return out;
  }

  async function insertDeliveries(
    q: pg.PoolClient,
    fresh: { e: RecordedEvent; webhookIds: string[] }[],
  ): Promise<DeliveryRow[]> {
    const rows: Record<string, unknown>[] = [];
    const bodies = new Map<string, string>();
    for (const { e, webhookIds } of fresh) {
      const body = deliveryBody(e);
      for (const w of webhookIds) {
        const id = deliveryIdOf(w, e.eventId, e.recordedAt);
        bodies.set(id, body);
        rows.push({
          delivery_id: id,
          tenant_id: e.tenantId,
          webhook_id: w,
          event_id: e.eventId,
          event_type: e.type,
          event_recorded_at: e.recordedAt,
          correlation_id: e.correlationId ?? null,
          body,
        });
      }
    }
    if (!rows.length) return [];
    // Up to the in-flight cap the new rows are held by this runner and handed straight to the
    // dispatcher; past it they wait, due at once, for the dispatcher's poll (so a backlog is never
    // all in memory at once).
    const room = stopping ? 0 : Math.max(0, config.maxInFlight - held.size);
    const token = room > 0 ? randomUUID() : null;
    rows.forEach((r, i) => (r.hold = i < room));
    // One JSON parameter instead of eight arrays: JSON.stringify is native, pg's array escaping is not.
    const { rows: inserted } = await q.query<Omit<DeliveryRow, 'body'>>(
      `insert into keel_runner_deliveries (delivery_id, tenant_id, webhook_id, event_id, event_type, event_recorded_at, correlation_id, body, state, due_at, lease_token)
       select x.delivery_id, x.tenant_id, x.webhook_id, x.event_id, x.event_type, x.event_recorded_at, x.correlation_id, x.body,
              case when x.hold then 'in_flight' else 'pending' end,
              case when x.hold then now() + $3::interval else now() end,
              case when x.hold then $2::uuid end
         from json_to_recordset($1::json) as x(delivery_id uuid, tenant_id text, webhook_id text, event_id text, event_type text, event_recorded_at timestamptz, correlation_id text, body text, hold boolean)
       on conflict (delivery_id) do nothing
       returning ${RETURNING.replace('body, ', '')}`,
      [JSON.stringify(rows), token, leaseInterval],
    );
    return inserted.map((r) => ({ ...r, body: bodies.get(r.delivery_id)! }));
  }

  async function redrive(q: pg.PoolClient, e: RecordedEvent): Promise<number> {
    const d = e.data as { deliveryId?: unknown; webhookId?: unknown };
    if (typeof d.deliveryId !== 'string') return 0;
    // A dead delivery goes back on the schedule with a fresh set of attempts. One whose last attempt
    // is still being recorded (the dead letter is appended before the row says so) is flagged, and
    // recording the dead letter then puts it back instead.
    const r = await q
      .query(
        `update keel_runner_deliveries set
         state = case when state = 'dead' then 'pending' else state end,
         due_at = case when state = 'dead' then now() else due_at end,
         attempts_base = case when state = 'dead' then attempt else attempts_base end,
         lease_token = case when state = 'dead' then null else lease_token end,
         redrive_requested = (state = 'in_flight'),
         updated_at = now()
        where delivery_id = $1::uuid and tenant_id = $2 and state in ('dead', 'in_flight')`,
        [d.deliveryId, e.tenantId],
      )
      .catch((err: { code?: string }) => {
        if (err.code === '22P02') return { rowCount: 0 }; // not a uuid: no such delivery
        throw err;
      });
    if (!r.rowCount)
      log.warn(
        { tenantId: e.tenantId, correlationId: e.correlationId, deliveryId: d.deliveryId },
        'redrive of a delivery that is not dead-lettered; ignored',
      );
    return r.rowCount ?? 0;
  }

  // ---------------------------------------------------------------------------------- dispatch
  async function dispatch(rows: DeliveryRow[]): Promise<void> {
    const todo = rows.filter((r) => {
      const mine = held.get(r.delivery_id);
      if (mine !== undefined) {
        // Our own lease ran out while the attempt is still going: keep going under the new token.
        held.set(r.delivery_id, r.lease_token);
        return false;
      }
      held.set(r.delivery_id, r.lease_token);
      return true;
    });
    if (!todo.length) return;
    let endpoints: Map<string, EndpointRow>;
    try {
      endpoints = await loadEndpoints(todo);
    } catch (err) {
      for (const r of todo) held.delete(r.delivery_id);
      log.error(
        { err: (err as Error).message },
        'could not load endpoints; the deliveries go back on the schedule when their lease ends',
      );
      return;
    }
    for (const row of todo) {
      track(
        held,
        running,
        row.delivery_id,
        deliver(row, endpoints.get(`${row.tenant_id}\u0000${row.webhook_id}`))
          .then((o) => (discard ? undefined : committer.push(o)))
          .catch((err: Error) =>
            log.error(
              {
                tenantId: row.tenant_id,
                correlationId: row.correlation_id,
                deliveryId: row.delivery_id,
                err: err.message,
              },
              'delivery outcome not recorded; it is retried when its lease ends',
            ),
          ),
      );
    }
  }

  async function loadEndpoints(rows: DeliveryRow[]): Promise<Map<string, EndpointRow>> {
    const pairs = [...new Set(rows.map((r) => `${r.tenant_id}\u0000${r.webhook_id}`))].map((k) => k.split('\u0000'));
    const { rows: eps } = await pool.query<EndpointRow>(
      `select e.tenant_id, e.webhook_id, e.url, e.secret, e.status, t.status as tenant_status
         from unnest($1::text[], $2::text[]) as k(tenant_id, webhook_id)
         join keel_runner_webhook_endpoints e on e.tenant_id = k.tenant_id and e.webhook_id = k.webhook_id
         left join keel_runner_tenants t on t.tenant_id = e.tenant_id`,
      [pairs.map((p) => p[0]), pairs.map((p) => p[1])],
    );
    return new Map(eps.map((e) => [`${e.tenant_id}\u0000${e.webhook_id}`, e]));
  }

  async function openSecret(tenantId: string, value: string): Promise<string> {
    const hit = secretCache.get(value);
    if (hit && Date.now() - hit.at < 5_000) return hit.plain;
    const plain = await svc.openSecret(tenantId, value);
    if (secretCache.size > 10_000) secretCache.clear();
    secretCache.set(value, { plain, at: Date.now() });
    return plain;
  }

  function event(row: DeliveryRow, type: string, attempt: number, data: Record<string, unknown>): NewEvent {
    const e: NewEvent = {
      eventId: outcomeEventId(row.created_at.getTime(), row.delivery_id, attempt, type),
      type,
      tenantId: row.tenant_id,
      actor: ACTOR,
      causationId: row.event_id,
      data: { webhookId: row.webhook_id, deliveryId: row.delivery_id, eventId: row.event_id, ...data },
    };
    if (row.correlation_id) e.correlationId = row.correlation_id;
    return e;
  }

  function deadLetter(row: DeliveryRow, reason: string, extra: NewEvent[] = []): Outcome {
    svc.metrics.webhookOutcomes.inc({ outcome: 'dead_lettered' });
    log.warn(
      {
        tenantId: row.tenant_id,
        correlationId: row.correlation_id,
        deliveryId: row.delivery_id,
        webhookId: row.webhook_id,
        reason,
      },
      'delivery dead-lettered',
    );
    return {
      row,
      events: [
        ...extra,
        event(row, 'WebhookDeliveryDeadLettered', row.attempt + (extra.length ? 1 : 0), {
          attempts: row.attempt + (extra.length ? 1 : 0),
          reason,
        }),
      ],
      state: 'dead',
      attempt: row.attempt + (extra.length ? 1 : 0),
      error: reason,
    };
  }

  const defer = (row: DeliveryRow, at: number): Outcome => ({
    row,
    events: [],
    state: 'pending',
    attempt: row.attempt,
    dueAt: new Date(at),
  });

  async function deliver(row: DeliveryRow, ep: EndpointRow | undefined): Promise<Outcome> {
    if (!ep || ep.status !== 'active') return deadLetter(row, 'endpoint removed');
    if (ep.tenant_status === 'erased') return deadLetter(row, 'tenant erased');
    if (ep.tenant_status === 'suspended') {
      svc.metrics.deferred.inc({ reason: 'tenant_suspended' });
      return defer(row, Date.now() + 60_000);
    }
    let url: URL;
    try {
      url = new URL(ep.url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
    } catch {
      return deadLetter(row, 'endpoint url is not an http(s) URL');
    }
    let secret: string;
    try {
      secret = await openSecret(row.tenant_id, ep.secret);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'KEY_DESTROYED' || code === 'DECRYPTION_FAILED')
        return deadLetter(row, `signing secret unusable: ${code}`);
      throw err;
    }
    const attempt = row.attempt + 1;
    const result = await guard(`${row.tenant_id}|${url.origin}`, async () => {
      const t = Math.floor(Date.now() / 1000);
      const res = await svc.http.send({
        method: 'POST',
        url: ep.url,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Keel-Webhooks/1',
          'keel-event-id': row.event_id,
          'keel-event-type': row.event_type,
          'keel-delivery-id': row.delivery_id,
          'keel-delivery-attempt': String(attempt),
          'idempotency-key': row.delivery_id,
          'keel-signature': signatureHeader(secret, row.body, t),
        },
        body: row.body,
        timeoutMs: config.webhookTimeoutMs,
        captureBytes: 512,
      });
      failpoint('webhook-after-send');
      // 4xx other than 408/429 means the destination is up and answering: not a circuit failure.
      const healthy = res.kind === 'response' && res.status < 500 && res.status !== 429 && res.status !== 408;
      return { value: res, healthy };
    });
    if (!result.ran) return defer(row, result.retryAt);
    const res = result.value;
    // Not a passing failure: the endpoint's address is refused (KEEL_RUNNER_PRIVATE_NETWORKS).
    if (res.kind === 'connection' && res.code === DESTINATION_NOT_ALLOWED) return deadLetter(row, res.error.slice(0, 500));
    if (res.kind === 'response' && res.status >= 200 && res.status < 300) {
      svc.metrics.webhookOutcomes.inc({ outcome: 'succeeded' });
      svc.metrics.webhookLag.observe((Date.now() - row.event_recorded_at.getTime()) / 1000);
      return {
        row,
        events: [
          event(row, 'WebhookDeliverySucceeded', attempt, {
            attempt,
            status: res.status,
            latencyMs: Math.round(res.latencyMs),
          }),
        ],
        state: 'succeeded',
        attempt,
        status: res.status,
      };
    }
    svc.metrics.webhookOutcomes.inc({ outcome: 'failed' });
    const error = res.kind === 'response' ? `endpoint answered ${res.status}` : res.error;
    const retryAfterMs = res.kind === 'response' ? parseRetryAfter(headerValue(res.headers, 'retry-after')) : undefined;
    const decision = decideRetry(
      config.webhookBackoff,
      attempt - row.attempts_base,
      retryAfterMs !== undefined ? { retryAfterMs } : {},
    );
    const failed: Record<string, unknown> = { attempt, error: error.slice(0, 500) };
    if (res.kind === 'response') failed.status = res.status;
    if (decision.retry) {
      const dueAt = new Date(Date.now() + decision.delayMs);
      failed.nextAttemptAt = dueAt.toISOString();
      return {
        row,
        events: [event(row, 'WebhookDeliveryFailed', attempt, failed)],
        state: 'pending',
        attempt,
        dueAt,
        ...(res.kind === 'response' && { status: res.status }),
        error,
      };
    }
    return deadLetter(row, `${decision.reason}; last: ${error}`.slice(0, 500), [
      event(row, 'WebhookDeliveryFailed', attempt, failed),
    ]);
  }

  // ------------------------------------------------------------------------------------ record
  const appendOutcomes = (appends: StreamAppend[]) => appendOutcomesWith(store, appends);
  const committer = groupCommitter<Outcome>(async (outcomes) => {
    const appends: StreamAppend[] = outcomes
      .filter((o) => o.events.length)
      .map((o) => ({ streamId: webhookStream(o.row.tenant_id, o.row.webhook_id), events: o.events }));
    if (appends.length) await withRetry(() => appendOutcomes(appends), 3);
    const rows = outcomes.map((o) => ({
      id: o.row.delivery_id,
      token: held.get(o.row.delivery_id) ?? o.row.lease_token,
      state: o.state,
      attempt: o.attempt,
      due_at: o.dueAt ?? null,
      status: o.status ?? null,
      error: o.error ?? null,
    }));
    // A lost row update (database crash within the async-commit window) only means the delivery is
    // attempted again with the same Idempotency-Key: what must not be lost, the outcome event, is
    // already durably appended. So this write skips waiting for the WAL flush.
    await withRetry(
      () =>
        pool.query(
          `update keel_runner_deliveries d set
             state = case when x.state = 'dead' and d.redrive_requested then 'pending' else x.state end,
             attempt = x.attempt,
             attempts_base = case when x.state = 'dead' and d.redrive_requested then x.attempt else d.attempts_base end,
             due_at = case when x.state = 'dead' and d.redrive_requested then now() else coalesce(x.due_at, d.due_at) end,
             redrive_requested = false,
             last_status = coalesce(x.status, d.last_status), last_error = x.error, lease_token = null, updated_at = now()
            from json_to_recordset($1::json) as x(id uuid, token uuid, state text, attempt int, due_at timestamptz, status int, error text)
           where d.delivery_id = x.id and d.lease_token = x.token and (select set_config('synchronous_commit', 'off', true)) = 'off'`,
          [JSON.stringify(rows)],
        ),
      3,
    );
    if (outcomes.some((o) => o.state === 'pending')) loop?.kick();
  });

  // -------------------------------------------------------------------------------------- loop
  async function tick(): Promise<boolean> {
    if (stopping) return false;
    if (Date.now() - lastPrune > 60_000) {
      lastPrune = Date.now();
      await pruneFinished(pool, DELIVERIES, `state = 'succeeded'`, config.retentionHours);
    }
    const room = config.maxInFlight - held.size;
    if (room <= 0) return false;
    const limit = Math.min(room, 500);
    const rows = await claimDue<DeliveryRow>(pool, DELIVERIES, limit, leaseInterval);
    if (rows.length) await dispatch(rows);
    return rows.length === limit;
  }

  return {
    intake,
    start() {
      loop ??= startWorkLoop({ name: WEBHOOK_GROUP, pollMs: config.pollMs, logger: log, tick });
    },
    inFlight: () => held.size,
    async stop() {
      stopping = true;
      await loop?.stop();
      await settleRunning(running, config.shutdownGraceMs);
      if (held.size) {
        // Hand back what is still in flight: due at once, for whichever runner comes next.
        discard = true;
        log.info({ handedBack: await handBack(pool, DELIVERIES, held) }, 'deliveries still in flight handed back');
      }
      await committer.drain();
    },
  };
}

/**
 * One call for the whole group. The events' ids are derived from (delivery, attempt, outcome), so
 * an outcome recorded before a crash is recorded again with the same ids; the store accepts a
 * stream part that is all new or an exact retry, not a mix, and a group mixes deliveries of one
 * endpoint. So when the group is refused for holding already-stored ids, each delivery's events
 * go alone: the stored ones are then exact retries (stored once), the others new.
 */
export async function appendOutcomesWith(store: RunnerServices['store'], appends: StreamAppend[]): Promise<void> {
  try {
    await store.appendBatch(appends);
  } catch (err) {
    const e = err as { code?: string; field?: string };
    if (e.code !== 'VALIDATION_FAILED' || e.field !== 'eventId' || appends.length === 1) throw err;
    for (const a of appends) await store.appendToStream(a.streamId, a.events);
  }
}

async function withRetry<T>(fn: () => Promise<T>, tries: number): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= tries) throw err;
      await new Promise((r) => setTimeout(r, 50 * 2 ** i));
    }
  }
}
