import type { RecordedEvent } from '@keel/shared-events';
import { diff, type Change } from './diff.ts';
import { evolverFor, redact, type ReplayState } from './evolve.ts';

/**
 * Folding a stream for replay debugging (pure: the events come in, the states go out).
 */
export interface ReplayEvent {
  eventId: string;
  type: string;
  schemaVersion: number;
  revision: number;
  position: number;
  occurredAt: string;
  recordedAt: string;
  actor: { kind: string; id: string };
  correlationId: string | null;
  causationId: string | null;
  data: unknown;
}

export interface HistoryStep {
  event: ReplayEvent;
  state: ReplayState;
  changes: Change[];
}

export function toReplayEvent(e: RecordedEvent): ReplayEvent {
  return {
    eventId: e.eventId,
    type: e.type,
    schemaVersion: e.schemaVersion,
    revision: e.streamPosition,
    position: e.globalPosition,
    occurredAt: e.occurredAt.toISOString(),
    recordedAt: e.recordedAt.toISOString(),
    actor: { kind: e.actor.kind, id: e.actor.id },
    correlationId: e.correlationId ?? null,
    causationId: e.causationId ?? null,
    data: redact(e.data),
  };
}

/** The state after the given events (all of one stream, in revision order). */
export function foldStream(streamId: string, events: RecordedEvent[]): ReplayState {
  const ev = evolverFor(streamId);
  return events.reduce((s, e) => ev.evolve(s, e), ev.initialState());
}

/** Each event with the state after it and what it changed. */
export function streamHistory(streamId: string, events: RecordedEvent[]): HistoryStep[] {
  const ev = evolverFor(streamId);
  let state = ev.initialState();
  return events.map((e) => {
    const next = ev.evolve(state, e);
    const step = { event: toReplayEvent(e), state: next, changes: diff(state, next) };
    state = next;
    return step;
  });
}

/** `at` of the replay routes: a revision (0-based, inclusive) or an instant (events recorded at or before it). */
export type ReplayPoint = { revision: number } | { time: Date };

export function parseReplayPoint(text: string | undefined): ReplayPoint | undefined | 'invalid' {
  if (text === undefined || text === '') return undefined;
  if (/^\d{1,15}$/.test(text)) return { revision: Number(text) };
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/.test(text)) {
    const t = new Date(text);
    if (!Number.isNaN(t.getTime())) return { time: t };
  }
  return 'invalid';
}
