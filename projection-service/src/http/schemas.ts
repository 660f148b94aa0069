import { nonNegativeInt } from '../read/params.ts';
import type { Query } from '../read/params.ts';

/**
 * JSON schemas of the read-side routes: they document the API at /docs and serialize replies.
 * Query strings are declared as plain strings (and unknown parameters refused); the strict
 * parsing with clear messages happens in the parsers (audit/filters.ts, dashboard/query.ts).
 */
const str = { type: 'string' } as const;
const nullableStr = { type: 'string', nullable: true } as const;
const int = { type: 'integer' } as const;
const nullableInt = { type: 'integer', nullable: true } as const;
const anyObject = { type: 'object', additionalProperties: true } as const;
const anyValue = {} as const;

const query = (props: Record<string, string>) =>
  ({
    type: 'object',
    additionalProperties: false,
    properties: Object.fromEntries(
      Object.entries(props).map(([k, description]) => [k, { type: 'string', description }]),
    ),
  }) as const;

const minPosition = { minPosition: 'wait (bounded) until the read model has applied this global position' };
export const minPositionQuery = query(minPosition);
export const parseMinPosition = (q: Query) => ({ minPosition: nonNegativeInt(q, 'minPosition') });

const auditFilters = {
  from: 'ISO-8601 date or date-time with zone; store time, inclusive',
  to: 'ISO-8601 date or date-time with zone; store time, exclusive',
  actor: '<id> or <kind>:<id>, kind = user | apiKey | connector | system',
  type: 'event type, or a comma-separated list',
  streamId: 'a stream of this tenant',
  correlationId: 'correlation id',
};
export const auditPageQuery = query({
  ...auditFilters,
  limit: '1..1000 (larger is capped), default 50',
  cursor: 'nextCursor of the previous page',
  ...minPosition,
});
export const auditExportQuery = query({ ...auditFilters, format: 'ndjson (default) or csv', ...minPosition });
export const atQuery = query({ at: 'revision (0-based, inclusive) or ISO-8601 instant' });
export const flowRunsQuery = query({
  status: 'running | retrying | succeeded | failed | dead_lettered',
  flowId: 'flow id',
  limit: '1..500 (larger is capped), default 50',
  cursor: 'nextCursor of the previous page',
  ...minPosition,
});
export const deliveriesQuery = query({
  status: 'pending | succeeded | failed | dead_lettered',
  webhookId: 'webhook id',
  limit: '1..500 (larger is capped), default 50',
  cursor: 'nextCursor of the previous page',
  ...minPosition,
});
export const ingestRatesQuery = query({
  from: 'ISO-8601, default 24 hours before to',
  to: 'ISO-8601, default the end of the current hour',
  type: 'event type, or a comma-separated list',
  ...minPosition,
});

const auditItem = {
  type: 'object',
  properties: {
    position: int,
    chainSeq: int,
    eventId: str,
    streamId: str,
    streamPosition: int,
    type: str,
    schemaVersion: int,
    actor: { type: 'object', properties: { kind: str, id: str }, required: ['kind', 'id'] },
    subject: nullableStr,
    occurredAt: str,
    recordedAt: str,
    correlationId: nullableStr,
    causationId: nullableStr,
    payload: anyObject,
    hash: { type: 'string', description: 'SHA-256 (hex) of the previous hash and the canonical form of this entry' },
  },
  required: [
    'position',
    'chainSeq',
    'eventId',
    'streamId',
    'type',
    'actor',
    'occurredAt',
    'recordedAt',
    'payload',
    'hash',
  ],
} as const;

export const auditPage = {
  type: 'object',
  properties: { items: { type: 'array', items: auditItem }, nextCursor: nullableStr },
  required: ['items', 'nextCursor'],
} as const;

export const verifyResult = {
  type: 'object',
  properties: {
    ok: { type: 'boolean' },
    checked: int,
    firstBrokenAt: {
      type: 'integer',
      description: 'global position of the first row (or checkpoint) that does not verify',
    },
    firstBrokenSeq: int,
    reason: str,
    checkpoints: { type: 'object', properties: { checked: int, total: int, keyIds: { type: 'array', items: str } } },
    head: { type: 'object', properties: { seq: int, position: int, hash: str } },
  },
  required: ['ok', 'checked'],
} as const;

const replayEvent = {
  type: 'object',
  properties: {
    eventId: str,
    type: str,
    schemaVersion: int,
    revision: int,
    position: int,
    occurredAt: str,
    recordedAt: str,
    actor: { type: 'object', properties: { kind: str, id: str } },
    correlationId: nullableStr,
    causationId: nullableStr,
    data: anyValue,
  },
} as const;

export const streamState = {
  type: 'object',
  properties: {
    streamId: str,
    at: { type: 'object', nullable: true, properties: { revision: int, time: str } },
    revision: int,
    state: anyObject,
    events: { type: 'array', items: replayEvent },
  },
} as const;

export const streamHistory = {
  type: 'object',
  properties: {
    streamId: str,
    revision: int,
    steps: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          event: replayEvent,
          state: anyObject,
          changes: {
            type: 'array',
            items: { type: 'object', properties: { path: str, op: str, before: anyValue, after: anyValue } },
          },
        },
      },
    },
  },
} as const;

const flowRun = {
  type: 'object',
  properties: {
    runId: str,
    flowId: nullableStr,
    flowVersion: nullableInt,
    status: str,
    triggerEventId: nullableStr,
    startedAt: nullableStr,
    finishedAt: nullableStr,
    durationMs: nullableInt,
    stepsSucceeded: int,
    stepsFailed: int,
    retriesScheduled: int,
    lastStepIndex: nullableInt,
    lastError: nullableStr,
    startedPosition: int,
    updatedPosition: int,
  },
} as const;
export const flowRunsPage = {
  type: 'object',
  properties: { items: { type: 'array', items: flowRun }, nextCursor: nullableStr },
} as const;

export const connectors = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          connectorId: str,
          name: nullableStr,
          kind: nullableStr,
          status: str,
          successes: int,
          failures: int,
          consecutiveFailures: int,
          lastError: nullableStr,
          lastSuccessAt: nullableStr,
          lastFailureAt: nullableStr,
          circuit: { type: 'string', enum: ['closed', 'open', 'half_open'] },
          updatedPosition: int,
        },
      },
    },
  },
} as const;

export const webhooks = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          webhookId: str,
          url: nullableStr,
          eventTypes: { type: 'array', items: str },
          active: { type: 'boolean' },
          pending: int,
          succeeded: int,
          failed: int,
          deadLettered: int,
          lastError: nullableStr,
          lastDeliveredAt: nullableStr,
          updatedPosition: int,
        },
      },
    },
  },
} as const;

export const deliveriesPage = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          webhookId: str,
          eventId: str,
          deliveryId: nullableStr,
          eventType: nullableStr,
          status: str,
          attempts: int,
          lastHttpStatus: nullableInt,
          lastError: nullableStr,
          latencyMs: nullableInt,
          nextAttemptAt: nullableStr,
          createdPosition: int,
          updatedPosition: int,
          updatedAt: str,
        },
      },
    },
    nextCursor: nullableStr,
  },
} as const;

export const ingestRates = {
  type: 'object',
  properties: {
    from: str,
    to: str,
    items: { type: 'array', items: { type: 'object', properties: { hour: str, eventType: str, count: int } } },
    totals: { type: 'object', additionalProperties: int },
  },
} as const;

export const overview = {
  type: 'object',
  properties: {
    flowRuns: { type: 'object', additionalProperties: int },
    connectors: {
      type: 'object',
      properties: {
        byCircuit: { type: 'object', additionalProperties: int },
        byStatus: { type: 'object', additionalProperties: int },
      },
    },
    deliveries: { type: 'object', properties: { pending: int, succeeded: int, failed: int, deadLettered: int } },
    events: { type: 'object', properties: { lastHour: int, last24h: int } },
  },
} as const;

export const projectionsStatus = {
  type: 'object',
  properties: {
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          projection: str,
          position: int,
          lag: int,
          rebuild: { ...anyObject, nullable: true },
          progress: { ...anyObject, nullable: true },
        },
      },
    },
  },
} as const;

export const rebuildAccepted = {
  type: 'object',
  properties: { projection: str, status: str },
} as const;
