import { hash } from 'node:crypto';

/**
 * Deterministic ids. Whatever a runner derives from the same inputs is the same after a crash,
 * a redelivery or a rebalance: the delivery of an event to an endpoint, a flow's run for a
 * trigger event, the event recording one attempt's outcome. Stores dedupe appends on eventId and
 * our tables on these keys, so doing the same work twice records it once.
 *
 * Layout is UUIDv7's (48-bit ms timestamp first, version 7, RFC 4122 variant) with the rest from
 * sha-256 of the parts: `ms` is a stable time of the thing (the trigger event's recordedAt, the
 * run's start), which keeps these ids roughly time-ordered, so their unique indexes stay cheap.
 */
export function derivedUuid(ms: number, ...parts: string[]): string {
  const h = hash('sha256', parts.join('\u0000'), 'buffer');
  const b = Buffer.allocUnsafe(16);
  const t = Math.max(0, Math.floor(ms));
  b[0] = Math.floor(t / 2 ** 40) & 0xff;
  b[1] = Math.floor(t / 2 ** 32) & 0xff;
  b[2] = (t >>> 24) & 0xff;
  b[3] = (t >>> 16) & 0xff;
  b[4] = (t >>> 8) & 0xff;
  b[5] = t & 0xff;
  h.copy(b, 6, 0, 10);
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const x = b.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** One delivery per (endpoint, event). Also the Idempotency-Key the endpoint sees, on every attempt. */
export function deliveryIdOf(webhookId: string, eventId: string, eventRecordedAt: Date): string {
  return derivedUuid(eventRecordedAt.getTime(), 'delivery', webhookId, eventId);
}

/** One run per (flow, trigger event). */
export function runIdOf(flowId: string, triggerEventId: string, eventRecordedAt: Date): string {
  return derivedUuid(eventRecordedAt.getTime(), 'run', flowId, triggerEventId);
}

/** The id of the event recording `what` for one attempt of a delivery or run step. */
export function outcomeEventId(ms: number, ...what: (string | number)[]): string {
  return derivedUuid(ms, 'outcome', ...what.map(String));
}
