/**
 * The event envelope (DESIGN.md "Event envelope"). Every event Keel stores or moves carries it.
 * Positions are plain numbers: PostgreSQL bigserial and EventStoreDB commit positions both stay
 * well below 2^53 for any realistic log.
 */
export type ActorKind = 'user' | 'apiKey' | 'connector' | 'system';

export interface Actor {
  kind: ActorKind;
  id: string;
}

export type EventData = Record<string, unknown>;

/** An event as a writer hands it to the store. The store fills in positions and recordedAt. */
export interface NewEvent<Type extends string = string, Data extends EventData = EventData> {
  /** UUIDv7; generated when absent. Appends are idempotent on it. */
  eventId?: string;
  type: Type;
  /** Defaults to the newest registered version of `type`. */
  schemaVersion?: number;
  tenantId: string;
  data: Data;
  /**
   * The JSON text of `data`, for a caller that has it already (batch ingest builds it around the
   * payload text it made for the content hash). It must parse to a value deep-equal to `data`:
   * the PostgreSQL store writes it as is instead of serializing `data` again; `data` is still
   * what is validated against the schema.
   */
  dataJson?: string;
  actor: Actor;
  /** Business time; defaults to now. */
  occurredAt?: Date;
  correlationId?: string;
  causationId?: string;
  /** W3C trace context of the write. */
  traceparent?: string;
}

/** An event as the store recorded it. */
export interface RecordedEvent<Type extends string = string, Data extends EventData = EventData> {
  eventId: string;
  type: Type;
  schemaVersion: number;
  tenantId: string;
  streamId: string;
  /** 0-based revision within the stream. */
  streamPosition: number;
  /** Position in the store's global log (strictly increasing in read order). */
  globalPosition: number;
  occurredAt: Date;
  recordedAt: Date;
  actor: Actor;
  correlationId?: string;
  causationId?: string;
  traceparent?: string;
  data: Data;
}

/** `{category}-{tenantId}-{id}`; the id part may itself contain dashes. */
export interface StreamName {
  category: string;
  tenantId: string;
  id: string;
}

/** Tenant ids are UUIDs or simple slugs without dashes, so the stream name parses unambiguously. */
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

export function streamName(category: string, tenantId: string, id: string): string {
  if (!/^[a-z][a-z0-9_]*$/.test(category)) throw new Error(`invalid stream category "${category}"`);
  return `${category}-${tenantId}-${id}`;
}

export function parseStreamName(streamId: string): StreamName | undefined {
  const dash = streamId.indexOf('-');
  if (dash <= 0) return undefined;
  const category = streamId.slice(0, dash);
  const rest = streamId.slice(dash + 1);
  const uuid = UUID_RE.exec(rest);
  if (uuid && rest[uuid[0].length] === '-') {
    return { category, tenantId: uuid[0], id: rest.slice(uuid[0].length + 1) };
  }
  const next = rest.indexOf('-');
  if (next <= 0) return undefined;
  return { category, tenantId: rest.slice(0, next), id: rest.slice(next + 1) };
}

export function streamCategory(streamId: string): string {
  const dash = streamId.indexOf('-');
  return dash < 0 ? streamId : streamId.slice(0, dash);
}
