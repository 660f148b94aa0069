import type { RecordedEvent } from '@keel/shared-events';
import { streamName, uuidv7 } from '@keel/shared-events';

/** Recorded events for pure tests: positions count up, times advance a second per event. */
export function eventFactory(start = new Date('2025-03-01T10:00:00.000Z')) {
  let position = 0;
  const revisions = new Map<string, number>();
  return function event(
    tenantId: string,
    category: string,
    id: string,
    type: string,
    data: Record<string, unknown>,
    extra: Partial<RecordedEvent> = {},
  ): RecordedEvent {
    position++;
    const streamId = streamName(category, tenantId, id);
    const rev = (revisions.get(streamId) ?? -1) + 1;
    revisions.set(streamId, rev);
    const at = new Date(start.getTime() + position * 1000);
    return {
      eventId: uuidv7(),
      type,
      schemaVersion: 1,
      tenantId,
      streamId,
      streamPosition: rev,
      globalPosition: position,
      occurredAt: at,
      recordedAt: at,
      actor: { kind: 'apiKey', id: 'k1' },
      correlationId: `corr-${position}`,
      data,
      ...extra,
    };
  };
}
