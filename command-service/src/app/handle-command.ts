import {
  ConcurrencyError,
  HttpError,
  streamName,
  type Actor,
  type Event,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
} from '@keel/shared-events';
import type { Command, Decider } from '../domain/decider.ts';
import { assertTenantWritable, tenantDecider, type TenantState } from '../domain/tenant.ts';
import type { CommandMetrics } from './metrics.ts';

/**
 * One command: load the stream, fold it, decide, append with the revision it was decided on.
 * A conflict means someone appended meanwhile: decide again on the new state, a bounded number
 * of times, then answer 409. With `If-Match` the caller named the revision it decided on, so a
 * mismatch is its conflict to resolve: 412, no retry.
 */
export interface CommandContext {
  store: EventStore;
  metrics: CommandMetrics;
  retries: number;
  /** Called with the recorded events after each successful append (inline projections, key shredding). */
  afterAppend?: (events: RecordedEvent[]) => Promise<void>;
}

export interface CommandRequest<C extends Command, E extends Event, S> {
  decider: Decider<C, E, S>;
  streamId: string;
  command: C;
  tenantId: string;
  actor: Actor;
  correlationId?: string;
  causationId?: string;
  /** The revision the caller expects the stream to be at (If-Match). */
  ifMatch?: number;
  /** Event ids to use, by index (Idempotency-Key replays); default: new UUIDv7s. */
  eventIdFor?: (index: number) => string;
  /**
   * Checks that must pass before deciding (e.g. the tenant is active), already started: they
   * run alongside the first stream read instead of before it.
   */
  checks?: Promise<unknown>[];
}

export interface CommandResult<S> {
  state: S;
  /** Appended by this command (empty when the decider had nothing to change). */
  events: RecordedEvent[];
  /** Stream revision after the command (-1: the stream has no events). */
  revision: number;
  /** Global position of the last appended event, or of the stream's last event when nothing was appended. */
  globalPosition: number;
}

export function preconditionFailed(expected: number, actual: number): HttpError {
  return new HttpError('PRECONDITION_FAILED', 412, `If-Match: the stream is at revision ${actual}, not ${expected}`, {
    expected,
    actual,
  });
}

export async function handleCommand<C extends Command, E extends Event, S>(
  ctx: CommandContext,
  req: CommandRequest<C, E, S>,
): Promise<CommandResult<S>> {
  const stop = ctx.metrics.commandDuration.startTimer({ command: req.command.type });
  try {
    const result = await run(ctx, req);
    stop({ outcome: result.events.length ? 'appended' : 'unchanged' });
    return result;
  } catch (e) {
    stop({ outcome: (e as { code?: string }).code ?? 'error' });
    throw e;
  }
}

async function run<C extends Command, E extends Event, S>(ctx: CommandContext, req: CommandRequest<C, E, S>): Promise<CommandResult<S>> {
  const { decider } = req;
  for (let attempt = 0; ; attempt++) {
    const [recorded] = await Promise.all([ctx.store.readStream(req.streamId), ...(attempt === 0 ? (req.checks ?? []) : [])]);
    const state = recorded.reduce<S>((s, e) => decider.evolve(s, e as unknown as E), decider.initialState());
    const last = recorded[recorded.length - 1];
    const revision = last ? last.streamPosition : -1;
    if (req.ifMatch !== undefined && req.ifMatch !== revision) {
      ctx.metrics.commandConflicts.inc({ command: req.command.type });
      throw preconditionFailed(req.ifMatch, revision);
    }
    const decided = decider.decide(req.command, state);
    if (decided.length === 0) return { state, events: [], revision, globalPosition: last?.globalPosition ?? 0 };

    const events: NewEvent[] = decided.map((e, i) => {
      const ne: NewEvent = { type: e.type, tenantId: req.tenantId, data: e.data, actor: req.actor };
      if (req.eventIdFor) ne.eventId = req.eventIdFor(i);
      if (req.correlationId) ne.correlationId = req.correlationId;
      if (req.causationId) ne.causationId = req.causationId;
      return ne;
    });
    try {
      const r = await ctx.store.appendToStream(req.streamId, events, {
        expectedRevision: revision === -1 ? 'no_stream' : revision,
      });
      if (ctx.afterAppend) await ctx.afterAppend(r.events);
      const next = decided.reduce<S>((s, e) => decider.evolve(s, e), state);
      return { state: next, events: r.events, revision: r.nextExpectedRevision, globalPosition: r.globalPosition };
    } catch (e) {
      if (!(e instanceof ConcurrencyError)) throw e;
      ctx.metrics.commandConflicts.inc({ command: req.command.type });
      if (req.ifMatch !== undefined) {
        const actual = typeof e.actual === 'number' ? e.actual : -1;
        throw preconditionFailed(req.ifMatch, actual);
      }
      if (attempt >= ctx.retries) throw e; // → 409 CONCURRENCY_CONFLICT
      // Short jittered pause so that racing writers do not collide again in lockstep.
      await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
    }
  }
}

export function tenantStream(tenantId: string): string {
  return streamName('tenant', tenantId, 'root');
}

/** Reads the tenant's own stream (the authority, not the auth table) and refuses unless active. */
export async function loadWritableTenant(store: EventStore, tenantId: string): Promise<TenantState> {
  const events = await store.readStream(tenantStream(tenantId));
  const state = events.reduce<TenantState>((s, e) => tenantDecider.evolve(s, e as never), tenantDecider.initialState());
  assertTenantWritable(state);
  return state;
}

/**
 * `loadWritableTenant`, started now and awaited later (pass it in `checks`): a refusal is
 * observed even when the request fails earlier for another reason, so it is never an
 * unhandled rejection.
 */
export function tenantGate(store: EventStore, tenantId: string): Promise<TenantState> {
  const p = loadWritableTenant(store, tenantId);
  p.catch(() => undefined);
  return p;
}

/** `If-Match: 3`, `"3"` or `W/"3"` → 3; absent → undefined; anything else → 400. */
export function parseIfMatch(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const v = Array.isArray(header) ? header[0] : header;
  const m = /^\s*(?:W\/)?"?(-1|\d{1,15})"?\s*$/.exec(v ?? '');
  if (!m) throw new HttpError('BAD_REQUEST', 400, 'If-Match must be a stream revision, e.g. If-Match: "3"', { field: 'headers.if-match' });
  return Number(m[1]);
}
