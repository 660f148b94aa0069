/**
 * `npm run bench -- codec [--ms 2000] [--payload-bytes 1024]`
 *
 * Avro single-object encode+decode (with validation, as the relay and consumers run it) against
 * the baseline JSON.stringify + JSON.parse of the same envelopes, in the same run. Two sets:
 * the whole catalogue (one example event per type, mostly small) and RecordIngested events
 * with a payload of about --payload-bytes, the high-volume case.
 */
import {
  canonicalHash,
  decodeEvent,
  encodeEvent,
  exampleEventData,
  keelEventTypes,
  uuidv7,
  type RecordedEvent,
} from '@keel/shared-events';
import { numberOption } from './support.ts';

interface Figures {
  events: number;
  avro: { encodeDecodePerSec: number; encodePerSec: number; decodePerSec: number; bytesPerEvent: number };
  json: { stringifyParsePerSec: number; stringifyPerSec: number; parsePerSec: number; bytesPerEvent: number };
  /** avro / json: above 1 means Avro is faster (or, for size, bigger). */
  ratio: { encodeDecode: number; encode: number; decode: number; size: number };
}

export default async function codecBench(args: string[]): Promise<Record<string, unknown>> {
  const opt = (name: string, dflt: number) => numberOption(args, name, dflt);
  const ms = opt('ms', 2000);
  const payloadBytes = opt('payload-bytes', 1024);

  const catalogue = keelEventTypes.map((type, i) => envelope(type, exampleEventData[type], i));
  const records = Array.from({ length: 200 }, (_, i) => {
    const payload = recordPayload(i, payloadBytes);
    return envelope(
      'RecordIngested',
      { source: 'shop', entityType: 'order', externalId: `o-${i}`, payload, receivedVia: 'api', contentHash: canonicalHash(payload) },
      i,
    );
  });

  return {
    durationPerMeasurementMs: ms,
    note: 'events/s on one core; JSON baseline leaves Dates as strings and validates nothing, Avro validates every event',
    catalogue: measure(catalogue, ms),
    [`recordIngested_${payloadBytes}B`]: measure(records, ms),
  };
}

function measure(events: RecordedEvent[], ms: number): Figures {
  const encoded = events.map(encodeEvent);
  const texts = events.map((e) => JSON.stringify(e));

  const avroBoth = rate(events, ms, (e) => decodeEvent(encodeEvent(e)));
  const avroEnc = rate(events, ms, (e) => encodeEvent(e));
  const avroDec = rate(encoded, ms, (b) => decodeEvent(b));
  const jsonBoth = rate(events, ms, (e) => JSON.parse(JSON.stringify(e)) as unknown);
  const jsonEnc = rate(events, ms, (e) => JSON.stringify(e));
  const jsonDec = rate(texts, ms, (t) => JSON.parse(t) as unknown);
  const avroBytes = avg(encoded.map((b) => b.length));
  const jsonBytes = avg(texts.map((t) => Buffer.byteLength(t)));
  return {
    events: events.length,
    avro: { encodeDecodePerSec: avroBoth, encodePerSec: avroEnc, decodePerSec: avroDec, bytesPerEvent: avroBytes },
    json: { stringifyParsePerSec: jsonBoth, stringifyPerSec: jsonEnc, parsePerSec: jsonDec, bytesPerEvent: jsonBytes },
    ratio: {
      encodeDecode: round(avroBoth / jsonBoth),
      encode: round(avroEnc / jsonEnc),
      decode: round(avroDec / jsonDec),
      size: round(avroBytes / jsonBytes),
    },
  };
}

let sink: unknown;

/** Items per second of `fn` over `items`, cycling through them for about `ms`. */
function rate<T>(items: T[], ms: number, fn: (item: T) => unknown): number {
  // Warm up first so the JIT has settled before the clock runs.
  const warm = process.hrtime.bigint() + BigInt(Math.ceil(ms / 4)) * 1_000_000n;
  while (process.hrtime.bigint() < warm) for (const item of items) sink = fn(item);
  let n = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let now = start;
  while (now < deadline) {
    for (const item of items) sink = fn(item);
    n += items.length;
    now = process.hrtime.bigint();
  }
  if (sink === Symbol.for('never')) console.log(sink); // keeps the results alive
  return Math.round(n / (Number(now - start) / 1e9));
}

function envelope(type: string, data: Record<string, unknown>, i: number): RecordedEvent {
  const tenantId = '0190a5c4-7c1e-7000-8000-000000000001';
  return {
    eventId: uuidv7(),
    type,
    schemaVersion: type === 'RecordIngested' ? 2 : 1,
    tenantId,
    streamId: `bench-${tenantId}-${i}`,
    streamPosition: i,
    globalPosition: 1_000_000 + i,
    occurredAt: new Date(1714564800000 + i),
    recordedAt: new Date(1714564800000 + i + 3),
    actor: { kind: 'apiKey', id: 'key_01' },
    correlationId: uuidv7(),
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    data,
  };
}

function recordPayload(i: number, bytes: number): Record<string, unknown> {
  const lines: unknown[] = [];
  const payload = { orderId: `o-${i}`, customer: { id: `c-${i % 97}`, country: 'DE' }, total: i * 1.25, paid: i % 2 === 0, lines };
  while (JSON.stringify(payload).length < bytes) {
    lines.push({ sku: `SKU-${lines.length}`, qty: (lines.length % 5) + 1, price: 9.99 + lines.length });
  }
  return payload;
}

const avg = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
const round = (x: number) => Math.round(x * 1000) / 1000;
