import type { ActorKind, NewEvent } from '../../envelope.ts';
import { parseStreamName } from '../../envelope.ts';
import { ValidationError } from '../../errors.ts';
import { isUuid, uuidv7 } from '../../ids.ts';
import type { EventSchemaRegistry } from '../../schemas/registry-port.ts';
import type { ExpectedRevision, StreamAppend } from '../port.ts';
import type { PreparedEvent } from './codec.ts';

/**
 * Checks appends before anything is written and fills in the defaults (eventId, schemaVersion,
 * occurredAt). The rules, field names and details are the PostgreSQL store's (store/postgres/
 * append.ts), so both stores refuse the same input with the same 400 body; on top of them come
 * EventStoreDB's own: `$` stream names and event types are the server's.
 */
export interface PreparedAppend {
  /** Index in the caller's list. */
  index: number;
  streamId: string;
  expected: ExpectedRevision;
  events: PreparedEvent[];
}

const ACTOR_KINDS: readonly string[] = ['user', 'apiKey', 'connector', 'system'];

export function prepareAppends(
  appends: readonly StreamAppend[],
  registry: EventSchemaRegistry | undefined,
): PreparedAppend[] {
  if (!Array.isArray(appends)) throw new ValidationError('appends must be an array', 'appends');
  const ids = new Set<string>();
  const streamsSeen = new Set<string>();
  const now = new Date();
  return appends.map((a, appendIndex) => {
    const at = { appendIndex };
    if (!a || typeof a !== 'object')
      throw new ValidationError(`appends[${appendIndex}] must be an object`, 'appends', at);
    const streamId = a.streamId;
    const tenantId = streamTenant(streamId, at);
    const expected = a.expectedRevision ?? 'any';
    if (!isExpectedRevision(expected)) {
      throw new ValidationError(
        `expectedRevision of ${streamId} must be 'any', 'no_stream', 'stream_exists' or a revision >= 0`,
        'expectedRevision',
        { field: 'expectedRevision', streamId, ...at },
      );
    }
    if (!Array.isArray(a.events)) {
      throw new ValidationError(`events of ${streamId} must be an array`, 'events', {
        field: 'events',
        streamId,
        ...at,
      });
    }
    if (streamsSeen.has(streamId) && expected !== 'any') {
      // A later part of the same stream just follows the earlier one.
      throw new ValidationError(
        `stream ${streamId} appears more than once in the batch; only its first append may carry an expectedRevision`,
        'expectedRevision',
        { field: 'expectedRevision', streamId, ...at },
      );
    }
    streamsSeen.add(streamId);
    const events = (a.events as NewEvent[]).map((ev, eventIndex) => {
      const p = prepareEvent(ev, streamId, tenantId, registry, now, { ...at, eventIndex });
      if (ids.has(p.eventId)) {
        throw new ValidationError(`eventId ${p.eventId} appears twice in one append`, 'eventId', {
          field: 'eventId',
          streamId,
          eventId: p.eventId,
          ...at,
          eventIndex,
        });
      }
      ids.add(p.eventId);
      return p;
    });
    return { index: appendIndex, streamId, expected, events };
  });
}

export function isExpectedRevision(expected: unknown): expected is ExpectedRevision {
  return (
    expected === 'any' ||
    expected === 'no_stream' ||
    expected === 'stream_exists' ||
    (typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= 0)
  );
}

/** The tenant a stream belongs to; ValidationError for anything that is not a Keel stream name. */
export function streamTenant(streamId: unknown, details: Record<string, unknown> = {}): string {
  const name = typeof streamId === 'string' && !streamId.startsWith('$') ? parseStreamName(streamId) : undefined;
  if (!name || !name.id) {
    // `$` streams are EventStoreDB's own (metadata, projections, settings), never Keel's.
    throw new ValidationError(
      `streamId "${String(streamId)}" is not a stream name ({category}-{tenantId}-{id})`,
      'streamId',
      {
        field: 'streamId',
        ...details,
      },
    );
  }
  return name.tenantId;
}

function prepareEvent(
  ev: NewEvent,
  streamId: string,
  tenantOfStream: string,
  registry: EventSchemaRegistry | undefined,
  now: Date,
  at: { appendIndex: number; eventIndex: number },
): PreparedEvent {
  const fail = (field: string, message: string): never => {
    throw new ValidationError(`event ${at.eventIndex} of ${streamId}: ${field} ${message}`, field, {
      field,
      streamId,
      ...at,
    });
  };
  if (!ev || typeof ev !== 'object') fail('event', 'must be an object');
  const eventId = ev.eventId ?? uuidv7();
  // EventStoreDB stores event ids as UUIDs, so the port's UUID rule is the server's too.
  if (typeof eventId !== 'string' || !isUuid(eventId)) fail('eventId', 'must be a UUID');
  const type = ev.type;
  if (typeof type !== 'string' || type.length === 0 || type.length > 200) fail('type', 'must be a non-empty string');
  if (type.startsWith('$')) fail('type', 'must not start with "$" (EventStoreDB system event types)');
  if (typeof ev.tenantId !== 'string' || ev.tenantId.length === 0) fail('tenantId', 'must be a non-empty string');
  if (ev.tenantId !== tenantOfStream)
    fail('tenantId', `is "${ev.tenantId}" but the stream belongs to tenant "${tenantOfStream}"`);
  const actor = ev.actor as { kind?: unknown; id?: unknown } | undefined;
  if (!actor || typeof actor !== 'object') fail('actor', 'must be {kind, id}');
  if (!ACTOR_KINDS.includes(actor!.kind as string)) fail('actor.kind', `must be one of ${ACTOR_KINDS.join(', ')}`);
  if (typeof actor!.id !== 'string' || actor!.id.length === 0) fail('actor.id', 'must be a non-empty string');
  const data = ev.data;
  if (!data || typeof data !== 'object' || Array.isArray(data)) fail('data', 'must be an object');
  const occurredAt = ev.occurredAt ?? now;
  if (!(occurredAt instanceof Date) || Number.isNaN(occurredAt.getTime())) fail('occurredAt', 'must be a valid Date');
  for (const f of ['correlationId', 'causationId', 'traceparent'] as const) {
    const v = ev[f];
    if (v !== undefined && v !== null && typeof v !== 'string') fail(f, 'must be a string');
  }

  let schemaVersion = ev.schemaVersion;
  if (registry) {
    try {
      schemaVersion ??= registry.latestVersion(type);
      registry.validate(type, schemaVersion, data);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      const field = err.field ?? 'data';
      throw new ValidationError(`event ${at.eventIndex} of ${streamId} (${type}): ${err.message}`, field, {
        ...(typeof err.details === 'object' && err.details !== null ? (err.details as object) : {}),
        field,
        streamId,
        ...at,
        eventId,
        type,
      });
    }
  } else {
    schemaVersion ??= 1;
  }
  if (!Number.isSafeInteger(schemaVersion) || schemaVersion! < 1) fail('schemaVersion', 'must be a positive integer');
  try {
    JSON.stringify(data);
  } catch (err) {
    fail('data', `is not JSON-serializable: ${(err as Error).message}`);
  }

  const p: PreparedEvent = {
    eventId: eventId.toLowerCase(),
    type,
    schemaVersion: schemaVersion!,
    tenantId: ev.tenantId,
    data,
    actor: { kind: actor!.kind as ActorKind, id: actor!.id as string },
    occurredAt: new Date(occurredAt.getTime()),
  };
  if (ev.correlationId != null) p.correlationId = ev.correlationId;
  if (ev.causationId != null) p.causationId = ev.causationId;
  if (ev.traceparent != null) p.traceparent = ev.traceparent;
  return p;
}
