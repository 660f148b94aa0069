import { randomUUID } from 'node:crypto';
import { streamName, type BatchAck, type BusBatch, type NewEvent, type RecordedEvent } from '@keel/shared-events';
import type pg from 'pg';
import { createTokenCache, type TokenCache } from '../connectors/oauth2.ts';
import { createSinkPools, type SinkPools } from '../connectors/postgres-sink.ts';
import { failpoint } from '../failpoints.ts';
import { matchInLogOrder } from '../intake.ts';
import { outcomeEventId, runIdOf } from '../ids.ts';
import { decideRetry, type BackoffPolicy } from '../retry/backoff.ts';
import { guardedCall, type RunnerServices } from '../services.ts';
import {
  applyConnectorEvent,
  applyFlowEvent,
  applyTenantEvent,
  CONNECTOR_EVENTS,
  FLOW_EVENTS,
  TENANT_EVENTS,
} from '../state/apply.ts';
import { startWorkLoop, type WorkLoop } from '../work-loop.ts';
import { claimDue, handBack, pruneFinished, settleRunning, track, type WorkTable } from '../work-queue.ts';
import { parseFlowDefinition, triggerMatches, type FlowDefinition } from './definition.ts';
import { liveDestinations } from './destinations.ts';
import { createFlowLookup } from './lookup.ts';
import { executeStep, type StepDeps } from './steps.ts';
import { compileExpression, type Json } from './transform.ts';

/**
 * FlowRunner: consumer group `runner-flows`.
 *
 * Intake keeps connectors and flows current and turns each event that triggers an enabled flow
 * into a run row (run id derived from flow id + event id, so a redelivered event finds its run).
 * Runs execute outside the bus handler, step by step; after each step its events are appended to
 * `run-<tenant>-<runId>` (causation = the trigger event) and the row moves on, so a crashed run
 * resumes at the step it was in. Step side effects carry `<runId>:<step>` as idempotency key:
 * the HTTP connector sends it as Idempotency-Key, the PostgreSQL sink records it with the upsert.
 */
export const FLOW_GROUP = 'runner-flows';
const ACTOR = { kind: 'system' as const, id: FLOW_GROUP };

/** Run and webhook-outcome events never trigger flows: a flow reacting to runs could trigger itself forever. */
export const NEVER_TRIGGERS: ReadonlySet<string> = new Set([
  'FlowRunStarted',
  'StepSucceeded',
  'StepFailed',
  'StepRetryScheduled',
  'FlowRunCompleted',
  'FlowRunFailed',
  'FlowRunDeadLettered',
  'WebhookDeliverySucceeded',
  'WebhookDeliveryFailed',
  'WebhookDeliveryDeadLettered',
  'WebhookDeliveryRedriven',
]);

export function runStream(tenantId: string, runId: string): string {
  return streamName('run', tenantId, runId);
}

/** The trigger event as a flow sees it: the first step's input and `$trigger`. */
export function triggerEnvelope(e: RecordedEvent): Json {
  return JSON.parse(
    JSON.stringify({
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
      data: e.data,
    }),
  ) as Json;
}

interface RunRow {
  run_id: string;
  tenant_id: string;
  flow_id: string;
  flow_version: number;
  trigger_event_id: string;
  correlation_id: string | null;
  trigger: Json;
  started: boolean;
  step_index: number;
  attempt: number;
  outputs: Json[];
  lease_token: string;
  started_at: Date;
}

const RETURNING = `run_id, tenant_id, flow_id, flow_version, trigger_event_id, correlation_id, trigger, started, step_index, attempt, outputs, lease_token, started_at`;
const RUNS: WorkTable = { table: 'keel_runner_flow_runs', id: 'run_id', alias: 'r', returning: RETURNING };

export interface FlowRunner {
  intake(batch: BusBatch): Promise<BatchAck | void>;
  start(): void;
  stop(): Promise<void>;
  inFlight(): number;
}

export function createFlowRunner(
  svc: RunnerServices,
  options: { sinkPools?: SinkPools; tokens?: TokenCache } = {},
): FlowRunner {
  const { pool, store, config, logger } = svc;
  const log = logger.child({ runner: FLOW_GROUP });
  const sinkPools = options.sinkPools ?? createSinkPools();
  const tokens = options.tokens ?? createTokenCache(svc.http);
  const destinations = liveDestinations(svc.http, sinkPools);
  const guard = guardedCall(svc);
  const held = new Map<string, string>();
  const running = new Set<Promise<void>>();
  let loop: WorkLoop | undefined;
  let stopping = false;
  let discard = false;
  let lastPrune = 0;
  const leaseInterval = `${config.leaseMs} milliseconds`;

  const lookup = createFlowLookup(pool);
  const definition = lookup.definition;
  const baseDeps: Omit<StepDeps, 'destinations' | 'guard' | 'tokens'> = {
    connector: lookup.connector,
    openSecret: svc.openSecret,
    defaultTimeoutMs: config.stepTimeoutMs,
  };
  const deps: StepDeps = { ...baseDeps, destinations, tokens, guard };

  // ------------------------------------------------------------------------------------ intake
  async function intake(batch: BusBatch): Promise<BatchAck | void> {
    const client = await pool.connect();
    let created: RunRow[] = [];
    try {
      await client.query('begin');
      const runs = await matchInLogOrder(batch.events, {
        change: (e) =>
          (TENANT_EVENTS as readonly string[]).includes(e.type)
            ? () => applyTenantEvent(client, e)
            : (CONNECTOR_EVENTS as readonly string[]).includes(e.type)
              ? () => applyConnectorEvent(client, e)
              : (FLOW_EVENTS as readonly string[]).includes(e.type)
                ? () => applyFlowEvent(client, e)
                : undefined,
        matches: (e) => !NEVER_TRIGGERS.has(e.type),
        match: (run) => matchFlows(client, run),
      });
      created = await insertRuns(client, runs);
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    failpoint('intake-after-commit');
    if (created.length) dispatch(created.filter((r) => r.lease_token));
  }

  async function matchFlows(
    q: pg.PoolClient,
    events: RecordedEvent[],
  ): Promise<{ e: RecordedEvent; flowId: string; version: number }[]> {
    const tenants = [...new Set(events.map((e) => e.tenantId))];
    const types = [...new Set(events.map((e) => e.type))];
    const { rows } = await q.query<{
      tenant_id: string;
      flow_id: string;
      current_version: number;
      trigger_event_type: string;
      definition: unknown;
      tenant_status: string | null;
    }>(
      `select f.tenant_id, f.flow_id, f.current_version, f.trigger_event_type, v.definition, t.status as tenant_status
         from keel_runner_flows f
         join keel_runner_flow_versions v on v.tenant_id = f.tenant_id and v.flow_id = f.flow_id and v.version = f.current_version
         left join keel_runner_tenants t on t.tenant_id = f.tenant_id
        where f.tenant_id = any($1) and f.trigger_event_type = any($2) and f.enabled`,
      [tenants, types],
    );
    const out: { e: RecordedEvent; flowId: string; version: number }[] = [];
    for (const e of events) {
      for (const f of rows) {
        if (f.tenant_id !== e.tenantId || f.trigger_event_type !== e.type || f.tenant_status === 'erased') continue;
        const trigger = (f.definition as { trigger?: unknown } | null)?.trigger;
        // An invalid trigger still makes a run when its event type matches: the run fails visibly instead of the flow staying silent.
        if (trigger && typeof trigger === 'object' && !triggerMatches(trigger as FlowDefinition['trigger'], e))
          continue;
        out.push({ e, flowId: f.flow_id, version: f.current_version });
      }
    }
    return out;
  }

  async function insertRuns(
    q: pg.PoolClient,
    runs: { e: RecordedEvent; flowId: string; version: number }[],
  ): Promise<RunRow[]> {
    if (!runs.length) return [];
    const hold = !stopping && held.size < config.maxInFlight;
    const token = hold ? randomUUID() : null;
    const { rows } = await q.query<RunRow>(
      `insert into keel_runner_flow_runs (run_id, tenant_id, flow_id, flow_version, trigger_event_id, correlation_id, trigger, state, due_at, lease_token)
       select x.*, $8, case when $9::uuid is null then now() else now() + $10::interval end, $9::uuid
         from unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::jsonb[]) as x
       on conflict (run_id) do nothing
       returning ${RETURNING}`,
      [
        runs.map((r) => runIdOf(r.flowId, r.e.eventId, r.e.recordedAt)),
        runs.map((r) => r.e.tenantId),
        runs.map((r) => r.flowId),
        runs.map((r) => r.version),
        runs.map((r) => r.e.eventId),
        runs.map((r) => r.e.correlationId ?? null),
        runs.map((r) => JSON.stringify(triggerEnvelope(r.e))),
        hold ? 'in_flight' : 'pending',
        token,
        leaseInterval,
      ],
    );
    return rows;
  }

  // ---------------------------------------------------------------------------------- dispatch
  function dispatch(rows: RunRow[]): void {
    for (const row of rows) {
      if (held.has(row.run_id)) {
        held.set(row.run_id, row.lease_token);
        continue;
      }
      held.set(row.run_id, row.lease_token);
      track(
        held,
        running,
        row.run_id,
        execute(row).catch((err: Error) =>
          log.error(
            { tenantId: row.tenant_id, correlationId: row.correlation_id, runId: row.run_id, err: err.message },
            'run interrupted; it resumes when its lease ends',
          ),
        ),
      );
    }
  }

  function event(row: RunRow, type: string, data: Record<string, unknown>, ...idParts: (string | number)[]): NewEvent {
    const e: NewEvent = {
      eventId: outcomeEventId(row.started_at.getTime(), row.run_id, type, ...idParts),
      type,
      tenantId: row.tenant_id,
      actor: ACTOR,
      causationId: row.trigger_event_id,
      data: { runId: row.run_id, ...data },
    };
    if (row.correlation_id) e.correlationId = row.correlation_id;
    return e;
  }

  type Progress = {
    state: 'pending' | 'in_flight' | 'completed' | 'failed' | 'dead';
    stepIndex: number;
    attempt: number;
    outputs: Json[];
    dueAt?: Date;
    error?: string;
    started: boolean;
  };

  /** Appends the events, then moves the row: fenced by the lease token, so a run taken over elsewhere is left alone. */
  async function record(row: RunRow, events: NewEvent[], p: Progress): Promise<boolean> {
    if (discard) return false;
    if (events.length) await store.appendToStream(runStream(row.tenant_id, row.run_id), events);
    const r = await pool.query(
      `update keel_runner_flow_runs set state = $3, step_index = $4, attempt = $5, outputs = $6, due_at = coalesce($7, due_at),
         last_error = $8, started = $9, lease_token = case when $3 = 'in_flight' then lease_token else null end, updated_at = now()
        where run_id = $1 and lease_token = $2`,
      [
        row.run_id,
        held.get(row.run_id) ?? row.lease_token,
        p.state,
        p.stepIndex,
        p.attempt,
        JSON.stringify(p.outputs),
        p.dueAt ?? null,
        p.error ?? null,
        p.started,
      ],
    );
    if (r.rowCount === 0)
      log.warn({ tenantId: row.tenant_id, runId: row.run_id }, 'run was taken over by another runner; stopping here');
    return (r.rowCount ?? 0) > 0;
  }

  const finished = (outcome: 'completed' | 'failed' | 'dead_lettered') => svc.metrics.runOutcomes.inc({ outcome });

  async function execute(row: RunRow): Promise<void> {
    const ctxLog = {
      tenantId: row.tenant_id,
      correlationId: row.correlation_id,
      runId: row.run_id,
      flowId: row.flow_id,
    };
    const raw = await definition(row.tenant_id, row.flow_id, row.flow_version);
    let def: FlowDefinition;
    const started = event(row, 'FlowRunStarted', {
      flowId: row.flow_id,
      flowVersion: row.flow_version,
      triggerEventId: row.trigger_event_id,
      input: row.trigger,
    });
    const fail = async (error: string) => {
      finished('failed');
      log.warn({ ...ctxLog, error }, 'flow run failed');
      await record(
        row,
        [...(row.started ? [] : [started]), event(row, 'FlowRunFailed', { error: error.slice(0, 1000) })],
        {
          state: 'failed',
          stepIndex: row.step_index,
          attempt: row.attempt,
          outputs: row.outputs,
          error,
          started: true,
        },
      );
    };
    try {
      def = parseFlowDefinition(raw);
    } catch (e) {
      return fail(`flow ${row.flow_id} version ${row.flow_version} is not runnable: ${(e as Error).message}`);
    }
    if (!row.started) {
      if (def.trigger.condition) {
        let pass: Json | undefined;
        try {
          pass = await compileExpression(def.trigger.condition, 'trigger.condition').evaluate(row.trigger);
        } catch (e) {
          return fail((e as Error).message);
        }
        if (pass !== true) {
          // Not a run after all: the condition filters the trigger out.
          await pool.query(`delete from keel_runner_flow_runs where run_id = $1 and lease_token = $2`, [
            row.run_id,
            held.get(row.run_id) ?? row.lease_token,
          ]);
          return;
        }
      }
      await store.appendToStream(runStream(row.tenant_id, row.run_id), [started]);
      row.started = true;
    }
    const policy: BackoffPolicy = { ...config.flowBackoff, ...def.retry };
    const outputs = [...row.outputs];
    for (let i = row.step_index; i < def.steps.length; i++) {
      if (stopping) {
        await record(row, [], {
          state: 'pending',
          stepIndex: i,
          attempt: row.step_index === i ? row.attempt : 0,
          outputs,
          dueAt: new Date(),
          started: true,
        });
        return;
      }
      const step = def.steps[i]!;
      const attempt = (i === row.step_index ? row.attempt : 0) + 1;
      const input: Json = i === 0 ? row.trigger : (outputs[i - 1] ?? null);
      const outcome = await executeStep(
        step,
        input,
        {
          tenantId: row.tenant_id,
          runId: row.run_id,
          stepIndex: i,
          attempt,
          trigger: row.trigger,
          steps: outputs,
          captureBodies: def.captureBodies === true,
        },
        deps,
      );
      if (outcome.kind === 'deferred') {
        log.info({ ...ctxLog, step: i, reason: outcome.reason }, 'step deferred');
        await record(row, [], {
          state: 'pending',
          stepIndex: i,
          attempt: attempt - 1,
          outputs,
          dueAt: new Date(outcome.retryAt),
          // Kept so that resuming a paused connector can wake exactly the runs waiting for it.
          error: outcome.reason,
          started: true,
        });
        return;
      }
      svc.metrics.stepOutcomes.inc({
        step_type: step.type,
        outcome: outcome.kind === 'succeeded' ? 'succeeded' : 'failed',
      });
      if (outcome.kind === 'succeeded') {
        if (step.type !== 'transform') failpoint('step-after-side-effect');
        outputs[i] = outcome.output ?? null;
        const events = [event(row, 'StepSucceeded', { stepIndex: i, attempt, summary: outcome.summary }, i, attempt)];
        // A transform that yields nothing ends the run early: the record is not for this destination.
        const last = i === def.steps.length - 1 || outcome.output === undefined;
        if (last)
          events.push(
            event(row, 'FlowRunCompleted', { durationMs: Math.max(0, Date.now() - row.started_at.getTime()) }),
          );
        if (
          !(await record(row, events, {
            state: last ? 'completed' : 'in_flight',
            stepIndex: i + 1,
            attempt: 0,
            outputs,
            started: true,
          }))
        )
          return;
        if (last) {
          finished('completed');
          return;
        }
        row.step_index = i + 1;
        row.attempt = 0;
        continue;
      }
      const failed = event(
        row,
        'StepFailed',
        { stepIndex: i, attempt, error: outcome.error.slice(0, 1000) },
        i,
        attempt,
      );
      if (!outcome.retryable) return failWith(row, failed, outcome.error, i, attempt, outputs, 'failed', ctxLog);
      const decision = decideRetry(
        policy,
        attempt,
        outcome.retryAfterMs !== undefined ? { retryAfterMs: outcome.retryAfterMs } : {},
      );
      if (!decision.retry)
        return failWith(row, failed, `${decision.reason}; last: ${outcome.error}`, i, attempt, outputs, 'dead', ctxLog);
      const retryAt = new Date(Date.now() + decision.delayMs);
      await record(
        row,
        [
          failed,
          event(row, 'StepRetryScheduled', { stepIndex: i, attempt, retryAt: retryAt.toISOString() }, i, attempt),
        ],
        {
          state: 'pending',
          stepIndex: i,
          attempt,
          outputs,
          dueAt: retryAt,
          error: outcome.error,
          started: true,
        },
      );
      loop?.kick();
      return;
    }
    // Every step was already done (a resumed run whose completion was not recorded).
    finished('completed');
    await record(
      row,
      [event(row, 'FlowRunCompleted', { durationMs: Math.max(0, Date.now() - row.started_at.getTime()) })],
      {
        state: 'completed',
        stepIndex: def.steps.length,
        attempt: 0,
        outputs,
        started: true,
      },
    );
  }

  async function failWith(
    row: RunRow,
    failed: NewEvent,
    error: string,
    stepIndex: number,
    attempt: number,
    outputs: Json[],
    state: 'failed' | 'dead',
    ctxLog: object,
  ): Promise<void> {
    const final =
      state === 'dead'
        ? event(row, 'FlowRunDeadLettered', { reason: error.slice(0, 1000) })
        : event(row, 'FlowRunFailed', { error: error.slice(0, 1000) });
    finished(state === 'dead' ? 'dead_lettered' : 'failed');
    log.warn(
      { ...ctxLog, step: stepIndex, attempt, error },
      state === 'dead' ? 'flow run dead-lettered' : 'flow run failed',
    );
    await record(row, [failed, final], { state, stepIndex, attempt, outputs, error, started: true });
  }

  async function tick(): Promise<boolean> {
    if (stopping) return false;
    if (Date.now() - lastPrune > 60_000) {
      lastPrune = Date.now();
      // Finished runs live on as events; their rows only dedupe late bus redeliveries.
      await pruneFinished(pool, RUNS, `state in ('completed', 'failed', 'dead')`, config.retentionHours);
    }
    const room = config.maxInFlight - held.size;
    if (room <= 0) return false;
    const limit = Math.min(room, 200);
    const rows = await claimDue<RunRow>(pool, RUNS, limit, leaseInterval);
    dispatch(rows);
    return rows.length === limit;
  }

  return {
    intake,
    inFlight: () => held.size,
    start() {
      loop ??= startWorkLoop({ name: FLOW_GROUP, pollMs: config.pollMs, logger: log, tick });
    },
    async stop() {
      stopping = true;
      await loop?.stop();
      await settleRunning(running, config.shutdownGraceMs);
      if (held.size) {
        discard = true;
        log.info({ handedBack: await handBack(pool, RUNS, held) }, 'runs still in flight handed back');
      }
      if (!options.sinkPools) await sinkPools.close();
    },
  };
}
