import type { EventData, RecordedEvent } from '../envelope.ts';

/**
 * What the stores and codecs need from the schema registry. The registry knows every event
 * type and its versions (Avro schemas in shared-events/schemas/), validates payloads and
 * upcasts old versions so that readers only ever see the newest version of a type.
 */
export interface EventSchemaRegistry {
  /** Newest version of `type`; throws ValidationError (field "type") for an unknown type. */
  latestVersion(type: string): number;
  /** Throws ValidationError naming the first offending field (e.g. "data.payload.size"). */
  validate(type: string, schemaVersion: number, data: EventData): void;
  /** Returns the event at the newest version of its type (the same object when already newest). */
  upcast<E extends RecordedEvent>(event: E): E;
}
