/** Event codecs: Avro single-object encoding for the bus, JSON envelopes for HTTP. */
export {
  createEventCodec,
  defaultEventCodec,
  encodeEvent,
  decodeEvent,
  fingerprintOf,
  envelopeSchemaFor,
} from './avro.ts';
export type { EventCodec } from './avro.ts';
export { toJsonEnvelope, fromJsonEnvelope } from './json.ts';
export type { JsonEnvelope } from './json.ts';
export { UnknownSchemaError, MalformedEventError } from './errors.ts';
export { crc64Avro, fingerprintHex } from './crc64.ts';
