import type { Actor, EventStore, NewEvent, StreamAppend } from '@keel/shared-events';
import { HttpError } from '@keel/shared-events';
import { idempotentEventId } from '../app/idempotency.ts';
import type { CommandServiceConfig } from '../config.ts';
import { fastUuidv7 } from './ids.ts';
import { BodyTooLargeError, ndjsonLines } from './ndjson.ts';
import { parseRecordLine, recordEvent, validateRecord, type RecordRejection, type RecordResult } from './records.ts';

/**
 * The ingest pipeline without HTTP: records in (NDJSON lines or parsed values), validated one by
 * one, valid ones appended in large batches (`appendBatch`, one store transaction each), the next
 * batch being parsed while the previous one commits. Runs in the request's thread or on an
 * ingest thread (threads.ts), with the same code.
 */
export type IngestItem =
  { kind: 'line'; text: string } | { kind: 'tooLong'; bytes: number } | { kind: 'value'; value: unknown };

export interface IngestOutcome {
  accepted: number;
  rejected: ({ index: number } & RecordRejection)[];
  rejectedCount: number;
  globalPosition: number;
}

export interface IngestContext {
  store: Pick<EventStore, 'appendBatch'>;
  ingest: CommandServiceConfig['ingest'];
}

/** An NDJSON body as ingest items, within the configured body and record limits. */
export function ndjsonItems(
  body: AsyncIterable<Buffer>,
  ingest: CommandServiceConfig['ingest'],
): AsyncIterable<IngestItem> {
  return ndjsonLines(body, { maxBytes: ingest.maxBytes, maxLineBytes: ingest.maxRecordBytes });
}

/** One request's records: whose, by whom, and how their event ids are made. */
export interface IngestJob {
  tenantId: string;
  actor: Actor;
  correlationId: string;
  /** With an Idempotency-Key, event ids derive from it and the record index (idempotentEventId). */
  idempotency?: { at: number; scope: string; key: string };
}

export async function runIngest(
  ctx: IngestContext,
  items: AsyncIterable<IngestItem>,
  o: IngestJob,
): Promise<IngestOutcome> {
  const idem = o.idempotency;
  const { batchSize, maxRejectedListed, maxRecordBytes } = ctx.ingest;
  const out: IngestOutcome = { accepted: 0, rejected: [], rejectedCount: 0, globalPosition: 0 };
  let batch = new Map<string, NewEvent[]>();
  let inBatch = 0;
  let pending: { promise: Promise<number>; count: number } | undefined;

  const settle = async () => {
    if (!pending) return;
    const p = pending;
    pending = undefined;
    out.globalPosition = Math.max(out.globalPosition, await p.promise);
    out.accepted += p.count;
  };
  const flush = async () => {
    if (!inBatch) return;
    // Sorted, so that concurrent batches lock shared streams in the same order.
    const appends: StreamAppend[] = [...batch.keys()]
      .sort()
      .map((streamId) => ({ streamId, events: batch.get(streamId)!, expectedRevision: 'any' }));
    const count = inBatch;
    batch = new Map();
    inBatch = 0;
    await settle();
    const promise = ctx.store.appendBatch(appends).then((r) => r.globalPosition);
    promise.catch(() => undefined); // awaited in settle(); never an unhandled rejection meanwhile
    pending = { promise, count };
  };

  let index = 0;
  try {
    for await (const item of items) {
      const i = index++;
      let result: RecordResult;
      if (item.kind === 'tooLong')
        result = {
          ok: false,
          rejection: {
            code: 'TOO_LARGE',
            message: `the record is ${item.bytes} bytes; the limit is ${maxRecordBytes}`,
          },
        };
      else if (item.kind === 'line') result = parseRecordLine(item.text);
      else result = validateRecord(item.value);
      if (!result.ok) {
        out.rejectedCount++;
        if (out.rejected.length < maxRejectedListed) out.rejected.push({ index: i, ...result.rejection });
        continue;
      }
      const { streamId, event } = recordEvent(result.record, {
        tenantId: o.tenantId,
        actor: o.actor,
        receivedVia: 'api',
        correlationId: o.correlationId,
        eventId: idem ? idempotentEventId(idem.at, idem.scope, idem.key, i) : fastUuidv7(),
      });
      const list = batch.get(streamId);
      if (list) list.push(event);
      else batch.set(streamId, [event]);
      if (++inBatch >= batchSize) await flush();
    }
    await flush();
    await settle();
  } catch (e) {
    await settle().catch(() => undefined);
    const stored = { accepted: out.accepted, globalPosition: out.globalPosition };
    if (e instanceof BodyTooLargeError)
      throw new HttpError(
        'PAYLOAD_TOO_LARGE',
        413,
        `${e.message}${out.accepted ? `; ${out.accepted} records before it were stored` : ''}`,
        stored,
      );
    if (e instanceof HttpError) throw e;
    throw new HttpError(
      'UNAVAILABLE',
      503,
      `ingest interrupted after ${out.accepted} records were stored; retry with the same Idempotency-Key to store the rest without duplicates`,
      { ...stored, cause: (e as Error).message },
    );
  }
  return out;
}
