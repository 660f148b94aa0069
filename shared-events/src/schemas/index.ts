/** The event contract: catalogue types, Avro schema registry, upcasters, canonical JSON. */
export * from './catalog.ts';
export { canonicalJson, canonicalHash } from './canonical-json.ts';
export {
  createSchemaRegistry,
  defaultSchemaRegistry,
  defaultSchemaDir,
  findProblem,
  parseEventSchema,
} from './registry.ts';
export type { EventSchema, KeelSchemaRegistry, SchemaRegistryOptions, SchemaProblem } from './registry.ts';
export { upcasters, recordIngestedV1ToV2 } from './upcasters.ts';
export type { Upcaster } from './upcasters.ts';
export { JsonType, IsoDateTimeType, TimestampMillisType, logicalTypes } from './logical-types.ts';
export { exampleEventData } from './examples.ts';
