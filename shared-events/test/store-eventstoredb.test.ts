import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AccessDeniedError,
  ANY,
  DeadlineExceededError,
  EventStoreDBClient,
  jsonEvent,
  MaxAppendSizeExceededError,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  StreamDeletedError as EsdbStreamDeletedError,
  TimeoutError,
  UnavailableError as EsdbUnavailableError,
  WrongExpectedVersionError,
  type RecordedEvent as EsdbRecordedEvent,
} from '@eventstore/db-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canonicalHash,
  ConcurrencyError,
  StreamDeletedError,
  UnavailableError,
  ValidationError,
  createSchemaRegistry,
  exampleEventData,
  getEventStoreDBEventStore,
  streamName,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
  type StreamAppend,
} from '@keel/shared-events';
import {
  CorruptEventError,
  fromEsdbEvent,
  metadataOf,
  toEventData,
  type PreparedEvent,
} from '../src/store/eventstoredb/codec.ts';
import { isTransient, mapEventStoreDBError } from '../src/store/eventstoredb/errors.ts';
import { escapeRegex, KEEL_STREAM_REGEX, planAllFilter, toClientFilter } from '../src/store/eventstoredb/filters.ts';
import {
  globalPositionOf,
  readPositionOf,
  toClientExpectedRevision,
  toSafeNumber,
} from '../src/store/eventstoredb/positions.ts';
import { prepareAppends } from '../src/store/eventstoredb/prepare.ts';
import { puller } from '../src/store/eventstoredb/pull.ts';
import { describeWithServer } from '../../test/support.ts';
import { eventStoreContract } from './store-contract.ts';

/**
 * The EventStoreDB adapter. The pure parts (envelope ↔ EventStoreDB mapping, filters, positions,
 * error mapping with the client's real error classes, input validation) are tested here always;
 * the adapter itself runs the shared contract suite against a real server when
 * KEEL_EVENTSTOREDB_URL is set (see shared-events/README-eventstoredb.md).
 */

const registry = createSchemaRegistry();
const TENANT = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
const STREAM = `record-${TENANT}-crm-contact-42`;

function prepared(overrides: Partial<PreparedEvent> = {}): PreparedEvent {
  return {
    eventId: '0190a1b2-c3d4-7e5f-8a9b-000000000001',
    type: 'RecordIngested',
    schemaVersion: 2,
    tenantId: TENANT,
    data: { ...exampleEventData.RecordIngested },
    actor: { kind: 'apiKey', id: 'key-1' },
    occurredAt: new Date('2024-05-01T12:00:00.123Z'),
    ...overrides,
  };
}

/** What the client hands back for a stored event (a plain value of the client's own type). */
function stored(
  e: PreparedEvent,
  revision: bigint,
  commit: bigint,
  extra: Partial<EsdbRecordedEvent> = {},
): EsdbRecordedEvent {
  const written = toEventData(e);
  return {
    streamId: STREAM,
    id: e.eventId,
    isJson: true,
    revision,
    type: written.type,
    created: new Date('2024-05-01T12:00:01.000Z'),
    data: written.data,
    // The client gives metadata back parsed from JSON, so round-trip it the same way.
    metadata: JSON.parse(JSON.stringify(written.metadata)) as Record<string, unknown>,
    position: { commit, prepare: commit },
    ...extra,
  } as EsdbRecordedEvent;
}

describe('EventStoreDB envelope mapping', () => {
  it('puts the whole envelope in JSON metadata, with EventStoreDB’s own correlation keys', () => {
    const e = prepared({ correlationId: 'corr-1', causationId: 'cause-1', traceparent: '00-abc-def-01' });
    const written = toEventData(e);
    expect(written).toMatchObject({
      id: e.eventId,
      contentType: 'application/json',
      type: 'RecordIngested',
      data: e.data,
    });
    expect(written.metadata).toEqual({
      keel: 1,
      eventId: e.eventId,
      tenantId: TENANT,
      schemaVersion: 2,
      actor: { kind: 'apiKey', id: 'key-1' },
      occurredAt: '2024-05-01T12:00:00.123Z',
      correlationId: 'corr-1',
      causationId: 'cause-1',
      traceparent: '00-abc-def-01',
      $correlationId: 'corr-1',
      $causationId: 'cause-1',
    });
  });

  it('leaves absent optional fields out of the metadata', () => {
    const m = metadataOf(prepared());
    expect(Object.keys(m).sort()).toEqual(['actor', 'eventId', 'keel', 'occurredAt', 'schemaVersion', 'tenantId']);
  });

  it('reads a stored event back into the envelope it was written from', () => {
    const e = prepared({ correlationId: 'corr-1', traceparent: '00-abc-def-01' });
    const recorded = fromEsdbEvent(stored(e, 7n, 123_456n));
    expect(recorded).toEqual({
      eventId: e.eventId,
      type: 'RecordIngested',
      schemaVersion: 2,
      tenantId: TENANT,
      streamId: STREAM,
      streamPosition: 7,
      globalPosition: 123_456,
      occurredAt: new Date('2024-05-01T12:00:00.123Z'),
      recordedAt: new Date('2024-05-01T12:00:01.000Z'),
      actor: { kind: 'apiKey', id: 'key-1' },
      correlationId: 'corr-1',
      traceparent: '00-abc-def-01',
      data: e.data,
    } satisfies RecordedEvent);
    expect(recorded).not.toHaveProperty('causationId');
  });

  it('takes the global position from the $all read when given', () => {
    expect(fromEsdbEvent(stored(prepared(), 0n, 10n), 99)?.globalPosition).toBe(99);
  });

  it('skips events that are not Keel’s: system types and foreign metadata', () => {
    const e = prepared();
    expect(fromEsdbEvent(stored(e, 3n, 10n, { type: '$streamDeleted' } as Partial<EsdbRecordedEvent>))).toBeUndefined();
    expect(
      fromEsdbEvent(stored(e, 3n, 10n, { metadata: { $correlationId: 'x' } } as Partial<EsdbRecordedEvent>)),
    ).toBeUndefined();
    expect(fromEsdbEvent(stored(e, 3n, 10n, { metadata: undefined } as Partial<EsdbRecordedEvent>))).toBeUndefined();
    expect(
      fromEsdbEvent(stored(e, 3n, 10n, { metadata: new Uint8Array([1, 2]) } as Partial<EsdbRecordedEvent>)),
    ).toBeUndefined();
  });

  it('refuses Keel metadata that does not parse, naming the event', () => {
    const e = prepared();
    const good = stored(e, 3n, 10n);
    const meta = good.metadata as Record<string, unknown>;
    for (const [field, value] of [
      ['keel', 2],
      ['tenantId', ''],
      ['schemaVersion', 0],
      ['actor', { kind: 'robot', id: 'x' }],
      ['occurredAt', 'yesterday'],
      ['correlationId', 42],
    ] as const) {
      const bad = { ...good, metadata: { ...meta, [field]: value } } as EsdbRecordedEvent;
      expect(() => fromEsdbEvent(bad), field).toThrow(CorruptEventError);
    }
    const notJson = { ...good, isJson: false, data: new Uint8Array([1]) } as unknown as EsdbRecordedEvent;
    expect(() => fromEsdbEvent(notJson)).toThrow(/data is not a JSON object/);
  });

  it('refuses an event without a position (servers older than 22.6 reading a stream)', () => {
    const e = prepared();
    expect(() => fromEsdbEvent(stored(e, 0n, 0n, { position: undefined } as Partial<EsdbRecordedEvent>))).toThrow(
      /no position/,
    );
    const u64max = { commit: 0xffffffffffffffffn, prepare: 0xffffffffffffffffn };
    expect(() => fromEsdbEvent(stored(e, 0n, 0n, { position: u64max } as Partial<EsdbRecordedEvent>))).toThrow(
      /no position/,
    );
  });
});

describe('EventStoreDB positions and revisions', () => {
  it('converts bigints exactly up to 2^53-1 and refuses beyond', () => {
    expect(toSafeNumber(0n, 'x')).toBe(0);
    expect(toSafeNumber(BigInt(Number.MAX_SAFE_INTEGER), 'x')).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => toSafeNumber(BigInt(Number.MAX_SAFE_INTEGER) + 1n, 'commit position')).toThrow(RangeError);
    expect(() => toSafeNumber(-1n, 'x')).toThrow(RangeError);
    expect(globalPositionOf({ commit: 4096n, prepare: 4096n })).toBe(4096);
  });

  it('starts $all at the beginning for 0 and at the event itself otherwise', () => {
    expect(readPositionOf(0)).toBe(START);
    expect(readPositionOf(1234)).toEqual({ commit: 1234n, prepare: 1234n });
  });

  it('maps expected revisions to the client’s constants', () => {
    expect(toClientExpectedRevision(undefined)).toBe(ANY);
    expect(toClientExpectedRevision('any')).toBe(ANY);
    expect(toClientExpectedRevision('no_stream')).toBe(NO_STREAM);
    expect(toClientExpectedRevision('stream_exists')).toBe(STREAM_EXISTS);
    expect(toClientExpectedRevision(0)).toBe(0n);
    expect(toClientExpectedRevision(41)).toBe(41n);
    for (const bad of [-1, 1.5, Number.NaN, 'latest']) {
      expect(() => toClientExpectedRevision(bad as never)).toThrow(ValidationError);
    }
  });
});

describe('EventStoreDB server-side filters', () => {
  /** The server evaluates .NET regexes; these constructs mean the same in JavaScript. */
  const matches = (regex: string | undefined, s: string) => new RegExp(regex ?? '(?!)').test(s);

  it('filters a tenant by stream name, whatever the category', () => {
    const plan = planAllFilter({ tenantId: TENANT });
    expect(plan.server?.filterOn).toBe('streamName');
    expect(matches(plan.server?.regex, STREAM)).toBe(true);
    expect(matches(plan.server?.regex, `run-${TENANT}-r1`)).toBe(true);
    expect(matches(plan.server?.regex, `record-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c-x`)).toBe(false);
    expect(matches(plan.server?.regex, `$ce-record`)).toBe(false);
    expect(matches(plan.server?.regex, `$$${STREAM}`)).toBe(false);
  });

  it('combines tenant and categories in one stream-name regex', () => {
    const plan = planAllFilter({ tenantId: 'acme', categories: ['record', 'run'] });
    expect(plan.server).toEqual({ filterOn: 'streamName', regex: '^(?:record|run)-acme-' });
    expect(matches(plan.server?.regex, 'run-acme-1')).toBe(true);
    expect(matches(plan.server?.regex, 'flow-acme-1')).toBe(false);
    expect(matches(plan.server?.regex, 'record-acmex-1')).toBe(false);
  });

  it('uses prefixes for categories alone and an exact regex for event types alone', () => {
    expect(planAllFilter({ categories: ['record', 'webhook'] }).server).toEqual({
      filterOn: 'streamName',
      prefixes: ['record-', 'webhook-'],
    });
    const byType = planAllFilter({ eventTypes: ['StepFailed', 'FlowRunFailed'] });
    expect(byType.server).toEqual({ filterOn: 'eventType', regex: '^(?:StepFailed|FlowRunFailed)$' });
    expect(matches(byType.server?.regex, 'StepFailed')).toBe(true);
    expect(matches(byType.server?.regex, 'StepFailedAgain')).toBe(false);
  });

  it('leaves an unfiltered read to the plain $all read', () => {
    expect(planAllFilter(undefined).server).toBeUndefined();
    expect(planAllFilter({}).server).toBeUndefined();
  });

  it('checks every condition on what comes back, exactly', () => {
    const ev = fromEsdbEvent(stored(prepared(), 0n, 10n))!;
    expect(
      planAllFilter({ tenantId: TENANT, eventTypes: ['RecordIngested'], categories: ['record'] }).accepts(ev),
    ).toBe(true);
    // A slug tenant equal to the first block of the UUID tenant passes the regex, not the check.
    const slug = planAllFilter({ tenantId: TENANT.slice(0, 8) });
    expect(matches(slug.server?.regex, STREAM)).toBe(true);
    expect(slug.accepts(ev)).toBe(false);
    // Event types asked for with a tenant are filtered here, not by the server.
    const both = planAllFilter({ tenantId: TENANT, eventTypes: ['TenantCreated'] });
    expect(both.server?.filterOn).toBe('streamName');
    expect(both.accepts(ev)).toBe(false);
    expect(planAllFilter({ categories: ['run'] }).accepts(ev)).toBe(false);
  });

  it('matches nothing for an empty list', () => {
    const ev = fromEsdbEvent(stored(prepared(), 0n, 10n))!;
    for (const filter of [{ eventTypes: [] }, { categories: [] }]) {
      const plan = planAllFilter(filter);
      expect(matches(plan.server?.regex, 'RecordIngested')).toBe(false);
      expect(plan.accepts(ev)).toBe(false);
    }
  });

  it('escapes what the regex engines would read as syntax', () => {
    expect(escapeRegex('a.b*c(d)|e')).toBe('a\\.b\\*c\\(d\\)\\|e');
    expect(new RegExp(`^${escapeRegex('t.1')}$`).test('tX1')).toBe(false);
    expect(matches(planAllFilter({ tenantId: 't.1' }).server?.regex, 'record-tX1-a')).toBe(false);
  });

  it('rejects malformed filters as bad input, and lets an unknown category match nothing', () => {
    expect(() => planAllFilter({ tenantId: '' })).toThrow(ValidationError);
    expect(() => planAllFilter({ eventTypes: [42 as unknown as string] })).toThrow(ValidationError);
    expect(() => planAllFilter({ categories: 'record' as unknown as string[] })).toThrow(ValidationError);
    const ev = fromEsdbEvent(stored(prepared(), 0n, 10n))!;
    const odd = planAllFilter({ categories: ['re-cord', 'Record'] });
    expect(odd.server).toEqual({ filterOn: 'streamName', prefixes: ['re-cord-', 'Record-'] });
    expect(odd.accepts(ev)).toBe(false);
  });

  it('builds the client’s filter objects, Keel streams only when nothing narrows', () => {
    const checkpointReached = () => undefined;
    expect(toClientFilter(undefined)).toMatchObject({
      filterOn: 'streamName',
      regex: KEEL_STREAM_REGEX,
      checkpointInterval: 1,
    });
    expect(matches(KEEL_STREAM_REGEX, STREAM)).toBe(true);
    expect(matches(KEEL_STREAM_REGEX, '$ce-record')).toBe(false);
    expect(toClientFilter({ filterOn: 'streamName', prefixes: ['run-'] }, { checkpointReached })).toMatchObject({
      filterOn: 'streamName',
      prefixes: ['run-'],
      checkpointReached,
    });
    expect(toClientFilter({ filterOn: 'eventType', regex: '^(?:A)$' })).toMatchObject({
      filterOn: 'eventType',
      regex: '^(?:A)$',
    });
  });
});

describe('EventStoreDB error mapping (the client’s own error classes)', () => {
  it('maps a wrong expected version to ConcurrencyError with the actual revision', () => {
    const err = new WrongExpectedVersionError(undefined, { streamName: STREAM, expected: 3n, current: 5n });
    const mapped = mapEventStoreDBError(err, { streamId: STREAM, expected: '3' });
    expect(mapped).toBeInstanceOf(ConcurrencyError);
    expect(mapped).toMatchObject({ streamId: STREAM, expected: '3', actual: 5, code: 'CONCURRENCY_CONFLICT' });
  });

  it('reports a missing stream as no_stream and keeps the caller’s spelling of the expectation', () => {
    const err = new WrongExpectedVersionError(undefined, {
      streamName: STREAM,
      expected: 'stream_exists',
      current: 'no_stream',
    });
    expect(mapEventStoreDBError(err, { expected: 'stream_exists' })).toMatchObject({
      actual: 'no_stream',
      expected: 'stream_exists',
    });
    expect(mapEventStoreDBError(err)).toMatchObject({ expected: 'stream_exists', streamId: STREAM });
  });

  it('maps a deleted stream to StreamDeletedError', () => {
    const mapped = mapEventStoreDBError(EsdbStreamDeletedError.fromStreamName(STREAM));
    expect(mapped).toBeInstanceOf(StreamDeletedError);
    expect(mapped).toMatchObject({ streamId: STREAM, code: 'STREAM_DELETED' });
  });

  it('maps unavailability, deadlines and dropped subscriptions to UnavailableError, keeping the cause', () => {
    for (const err of [new EsdbUnavailableError(), new DeadlineExceededError(), new TimeoutError()]) {
      const mapped = mapEventStoreDBError(err);
      expect(mapped).toBeInstanceOf(UnavailableError);
      expect((mapped as Error & { cause?: unknown }).cause).toBe(err);
      expect(isTransient(err)).toBe(true);
    }
    const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });
    expect(mapEventStoreDBError(grpc)).toBeInstanceOf(UnavailableError);
    expect(mapEventStoreDBError(new Error('Failed to discover after 10 attempts.'))).toBeInstanceOf(UnavailableError);
  });

  it('turns an over-sized append into a ValidationError', () => {
    const mapped = mapEventStoreDBError(MaxAppendSizeExceededError.fromMaxAppendSize(1_048_576));
    expect(mapped).toBeInstanceOf(ValidationError);
    expect(mapped).toMatchObject({ field: 'events', details: { maxAppendSize: 1_048_576 } });
  });

  it('leaves everything else as it is', () => {
    const denied = new AccessDeniedError();
    expect(mapEventStoreDBError(denied)).toBe(denied);
    expect(isTransient(denied)).toBe(false);
    const bug = new TypeError('x is undefined');
    expect(mapEventStoreDBError(bug)).toBe(bug);
    const ours = new ConcurrencyError('s', '1', 2);
    expect(mapEventStoreDBError(ours)).toBe(ours);
  });
});

describe('EventStoreDB append preparation (the PostgreSQL store’s rules and field names)', () => {
  const event = (overrides: Partial<NewEvent> = {}): NewEvent => ({
    type: 'RecordIngested',
    tenantId: TENANT,
    data: { ...exampleEventData.RecordIngested },
    actor: { kind: 'apiKey', id: 'key-1' },
    ...overrides,
  });
  const one = (events: NewEvent[], expectedRevision?: StreamAppend['expectedRevision']) =>
    prepareAppends(
      [{ streamId: STREAM, events, ...(expectedRevision !== undefined ? { expectedRevision } : {}) }],
      registry,
    )[0]!;
  const refusal = (fn: () => unknown): ValidationError => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      return err as ValidationError;
    }
    throw new Error('expected a ValidationError, nothing was thrown');
  };

  it('fills in eventId (UUIDv7), the newest schema version, occurredAt and expectedRevision', () => {
    const before = Date.now();
    const a = one([event()]);
    expect(a).toMatchObject({ index: 0, streamId: STREAM, expected: 'any' });
    const p = a.events[0]!;
    expect(p.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(p.schemaVersion).toBe(2);
    expect(p.occurredAt.getTime()).toBeGreaterThanOrEqual(before);
  });

  it('keeps what the writer set, with the event id in EventStoreDB’s lowercase', () => {
    const occurredAt = new Date('2020-01-01T00:00:00Z');
    const data = { source: 's', entityType: 'contact', externalId: '42', payload: { a: 1 } };
    const [p] = one(
      [
        event({
          eventId: '0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B',
          schemaVersion: 1,
          occurredAt,
          data,
          correlationId: 'c',
        }),
      ],
      3,
    ).events;
    expect(p).toMatchObject({
      eventId: '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
      schemaVersion: 1,
      occurredAt,
      data,
      correlationId: 'c',
    });
  });

  it('rejects bad input naming the field, with where it was in the details', () => {
    const cases: [NewEvent[], string][] = [
      [[event({ tenantId: 'other' })], 'tenantId'],
      [[event(), event({ eventId: 'not-a-uuid' })], 'eventId'],
      [[event({ type: '$metadata' })], 'type'],
      [[event({ actor: { kind: 'robot' as never, id: 'x' } })], 'actor.kind'],
      [[event({ occurredAt: new Date('nope') })], 'occurredAt'],
      [[event({ schemaVersion: 0 })], 'schemaVersion'],
      [[event({ type: 'NoSuchEvent' })], 'type'],
    ];
    for (const [events, field] of cases) {
      const err = refusal(() => one(events));
      expect(err.field, field).toBe(field);
      expect(err.details, field).toMatchObject({ field, streamId: STREAM, appendIndex: 0 });
    }
    expect(refusal(() => one([event(), event({ eventId: 'x' })])).details).toMatchObject({ eventIndex: 1 });
  });

  it('validates data against the schema registry, naming the field inside data', () => {
    const err = refusal(() => one([event({ data: { source: 's', entityType: 'e' } })]));
    expect(err.field).toBe('data.externalId');
  });

  it('rejects the same event id twice in one call, also across streams of a batch', () => {
    const id = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
    expect(refusal(() => one([event({ eventId: id }), event({ eventId: id.toUpperCase() })])).field).toBe('eventId');
    const other = `record-${TENANT}-crm-contact-43`;
    const batch: StreamAppend[] = [
      { streamId: STREAM, events: [event({ eventId: id })] },
      { streamId: other, events: [event({ eventId: id })] },
    ];
    expect(refusal(() => prepareAppends(batch, registry)).details).toMatchObject({ appendIndex: 1, eventIndex: 0 });
  });

  it('lets a stream appear again in a batch only without its own expectedRevision', () => {
    const twice = (expectedRevision: StreamAppend['expectedRevision']) =>
      prepareAppends(
        [
          { streamId: STREAM, events: [event()], expectedRevision: 'no_stream' },
          { streamId: STREAM, events: [event()], expectedRevision },
        ],
        registry,
      );
    expect(twice('any').map((a) => a.expected)).toEqual(['no_stream', 'any']);
    expect(refusal(() => twice(0)).field).toBe('expectedRevision');
  });

  it('refuses expected revisions the port does not know', () => {
    for (const bad of [-1, 1.5, 'latest']) {
      expect(refusal(() => one([event()], bad as never)).field).toBe('expectedRevision');
    }
  });

  it('refuses stream ids EventStoreDB reserves or Keel cannot parse', () => {
    for (const bad of ['', '$ce-record', `$$${STREAM}`, 'nodash', 'record-acme']) {
      expect(refusal(() => prepareAppends([{ streamId: bad, events: [event()] }], registry)).field, bad).toBe(
        'streamId',
      );
    }
  });
});

describe('puller', () => {
  it('hands items over one at a time, shows what is buffered, and ends', async () => {
    const p = puller<{ n: number }>(Readable.from([{ n: 1 }, { n: 2 }, { n: 3 }]));
    const seen: number[] = [];
    for (let item = await p.next(); item !== undefined; item = await p.next()) seen.push(item.n);
    expect(seen).toEqual([1, 2, 3]);
    expect(await p.next()).toBeUndefined();
  });

  it('throws the stream’s error', async () => {
    const r = new Readable({ objectMode: true, read() {} });
    const p = puller(r);
    const next = p.next();
    r.destroy(new Error('boom'));
    await expect(next).rejects.toThrow('boom');
  });

  it('ends when the stream is destroyed without an error (a stopped subscription)', async () => {
    const r = new Readable({ objectMode: true, read() {} });
    r.push({ n: 1 });
    const p = puller<{ n: number }>(r);
    expect(await p.next()).toEqual({ n: 1 });
    expect(p.buffered).toBe(0);
    const next = p.next();
    r.destroy();
    await expect(next).resolves.toBeUndefined();
  });
});

describe('EventStoreDB store without a server', () => {
  // Nothing listens on port 1: the real client fails to connect, nothing is faked.
  const unreachable = () => getEventStoreDBEventStore({ connectionString: 'esdb://127.0.0.1:1?tls=false', registry });
  const good: NewEvent = {
    type: 'RecordIngested',
    tenantId: TENANT,
    data: { ...exampleEventData.RecordIngested },
    actor: { kind: 'system', id: 'test' },
  };

  it('rejects bad input before talking to the server', async () => {
    const store = unreachable();
    try {
      await expect(store.appendToStream(STREAM, [{ ...good, tenantId: 'other' }])).rejects.toBeInstanceOf(
        ValidationError,
      );
      await expect(store.appendToStream(STREAM, [good], { expectedRevision: -5 })).rejects.toBeInstanceOf(
        ValidationError,
      );
      // One bad event anywhere in a batch: nothing is attempted, not even the valid streams.
      const batch = store.appendBatch([
        { streamId: STREAM, events: [good] },
        { streamId: `record-${TENANT}-crm-contact-43`, events: [{ ...good, data: { nope: true } }] },
      ]);
      await expect(batch).rejects.toMatchObject({
        field: expect.stringMatching(/^data\./),
        details: { appendIndex: 1 },
      });
      await expect(store.readAll({ filter: { tenantId: '' } })).rejects.toBeInstanceOf(ValidationError);
      await expect(store.readAll({ maxCount: 0 })).rejects.toBeInstanceOf(ValidationError);
      await expect(store.deleteStream('nodash')).rejects.toBeInstanceOf(ValidationError);
      await expect(store.truncateBefore(STREAM, -1)).rejects.toBeInstanceOf(ValidationError);
      await expect(store.readStream(STREAM, { maxCount: -1 })).rejects.toBeInstanceOf(ValidationError);
      expect(() => store.subscribe({ filter: { tenantId: '' } }, async () => undefined)).toThrow(ValidationError);
      expect(() => store.subscribe({ batchSize: 0 }, async () => undefined)).toThrow(ValidationError);
    } finally {
      await store.close();
    }
  });

  it('answers UnavailableError when the server cannot be reached', async () => {
    const store = unreachable();
    try {
      await expect(store.appendToStream(STREAM, [good])).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.readStream(STREAM)).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.readAll()).rejects.toBeInstanceOf(UnavailableError);
      await expect(store.headPosition()).rejects.toBeInstanceOf(UnavailableError);
    } finally {
      await store.close();
    }
  });

  it('keeps a subscription retrying through an outage until it is stopped', async () => {
    const store = unreachable();
    const sub = store.subscribe({ filter: { tenantId: TENANT } }, async () => undefined);
    let settled = false;
    void sub.done.finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    await sub.stop();
    await expect(sub.done).resolves.toBeUndefined();
    await store.close();
  });
});

// ------------------------------------------------------------------------ against a real server

const serverUrl = process.env.KEEL_EVENTSTOREDB_URL || undefined;
const noServer =
  'KEEL_EVENTSTOREDB_URL is unset; start one with `docker run -p 2113:2113 eventstore/eventstore:24.10 --insecure --run-projections=All` ' +
  "and set KEEL_EVENTSTOREDB_URL='esdb://localhost:2113?tls=false' (shared-events/README-eventstoredb.md)";

describeWithServer('eventstoredb', 'EventStoreDB event store (real server)', serverUrl, noServer, (url) => {
  // EventStoreDB has no multi-stream transaction: the contract's all-or-nothing batch checks are off.
  eventStoreContract(
    'EventStoreDB',
    async () => {
      const store = getEventStoreDBEventStore({ connectionString: url, registry });
      return { store, cleanup: () => store.close() };
    },
    { atomicBatch: false },
  );

  describe('EventStoreDB specifics', () => {
    let store: EventStore;
    let raw: EventStoreDBClient;
    const actor = { kind: 'system', id: 'store-eventstoredb-test' } as const;
    const record = (t: string, id: string, payload: Record<string, unknown> = {}): NewEvent => ({
      type: 'RecordIngested',
      tenantId: t,
      actor,
      data: {
        source: 'crm',
        entityType: 'customer',
        externalId: id,
        payload,
        receivedVia: 'api',
        contentHash: canonicalHash(payload),
      },
    });
    const recordStream = (t: string, id: string) => streamName('record', t, `customer-${id}`);

    beforeAll(() => {
      store = getEventStoreDBEventStore({ connectionString: url, registry });
      raw = EventStoreDBClient.connectionString(url);
    });
    afterAll(async () => {
      await store?.close();
      await raw?.dispose();
    });

    it('stores the envelope as JSON metadata that EventStoreDB’s own tooling reads', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'meta');
      const r = await store.appendToStream(stream, [
        { ...record(t, 'meta'), correlationId: 'corr-9', causationId: 'cause-9' },
      ]);
      const [stored] = await collect(raw.readStream(stream));
      expect(stored?.event).toMatchObject({
        id: r.events[0]!.eventId,
        type: 'RecordIngested',
        isJson: true,
        revision: 0n,
      });
      expect(stored?.event?.metadata).toMatchObject({
        keel: 1,
        eventId: r.events[0]!.eventId,
        tenantId: t,
        schemaVersion: 2,
        actor,
        correlationId: 'corr-9',
        $correlationId: 'corr-9',
        $causationId: 'cause-9',
      });
      expect(Number(stored?.event?.position?.commit)).toBe(r.globalPosition);
    });

    it('steps over events that are not Keel’s, in a stream and in $all', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'mixed');
      const first = await store.appendToStream(stream, [record(t, 'mixed', { n: 1 })]);
      await raw.appendToStream(stream, jsonEvent({ type: 'SomethingElse', data: { written: 'by another tool' } }));
      await store.truncateBefore(recordStream(t, 'other'), 1); // a $metadata event in $all
      const last = await store.appendToStream(stream, [record(t, 'mixed', { n: 2 })]);
      expect((await store.readStream(stream)).map((e) => e.streamPosition)).toEqual([0, 2]);
      const seen: RecordedEvent[] = [];
      let after = first.globalPosition - 1; // not an event position: the store finds one before it
      for (let guard = 0; guard < 1000 && !seen.some((e) => e.eventId === last.events[0]!.eventId); guard++) {
        const page = await store.readAll({ after, maxCount: 10 });
        seen.push(...page.events);
        after = page.position;
      }
      const mine = seen.filter((e) => e.tenantId === t);
      expect(mine.map((e) => e.globalPosition)).toEqual([first.globalPosition, last.globalPosition]);
      expect(seen.every((e) => !e.type.startsWith('$') && !e.streamId.startsWith('$'))).toBe(true);
    });

    it('reports the revision of a soft-deleted stream, hidden from reads', async () => {
      const t = randomUUID();
      const stream = recordStream(t, 'soft');
      await store.appendToStream(
        stream,
        [0, 1, 2].map((n) => record(t, 'soft', { n })),
      );
      await store.deleteStream(stream);
      expect(await store.getStreamMetadata(stream)).toMatchObject({ revision: 2, truncateBefore: 3, deleted: 'soft' });
      expect(await store.readStream(stream)).toEqual([]);
    });

    it('a batch that failed part-way is completed by retrying it: what was written deduplicates', async () => {
      const t = randomUUID();
      const taken = recordStream(t, 'taken');
      await store.appendToStream(taken, [record(t, 'taken')]);
      const free = recordStream(t, 'free');
      const freeEvent = { ...record(t, 'free'), eventId: randomUUID() };
      const takenEvent = { ...record(t, 'taken', { again: true }), eventId: randomUUID() };
      const failed = store.appendBatch([
        { streamId: free, events: [freeEvent], expectedRevision: 'no_stream' },
        { streamId: taken, events: [takenEvent], expectedRevision: 'no_stream' },
      ]);
      await expect(failed).rejects.toBeInstanceOf(ConcurrencyError);
      const retried = await store.appendBatch([
        { streamId: free, events: [freeEvent], expectedRevision: 'no_stream' },
        { streamId: taken, events: [takenEvent], expectedRevision: 0 },
      ]);
      expect(retried.streams.map((s) => s.nextExpectedRevision)).toEqual([0, 1]);
      expect(await store.readStream(free)).toHaveLength(1);
      expect((await store.readStream(taken)).map((e) => e.eventId)).toHaveLength(2);
    });
  });
});

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of iterable) out.push(x);
  return out;
}
