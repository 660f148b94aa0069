// The PostgreSQL event store (shared-events/src/store/postgres). Plain ESM JavaScript: knex
// imports migrations itself, outside any TypeScript loader.
//
// Gap-safe global log, in short (the long version is in src/store/postgres/index.ts):
// - every append runs keel_append(), one statement and so one transaction;
// - keel_reserve_positions() assigns the transaction's id (xid8) and reserves its block of
//   global positions under one advisory lock held for microseconds, so positions grow in the
//   same order as transaction ids;
// - readers take rows in global_position order and stop at the first row whose transaction_id
//   is not below pg_snapshot_xmin(pg_current_snapshot()): everything before it has committed or
//   will never exist. The checkpoint is a single number, the global position.

const LOCK_KEY = 7031_2024_0001; // advisory lock id of the position reservation (any fixed bigint)

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    create sequence keel_events_global_position_seq as bigint minvalue 1 start 1 cache 1;

    -- One row per event. Column order keeps the fixed-width columns together (no padding).
    -- data is JSON text, not jsonb: the store writes it with JSON.stringify (always valid) and
    -- hands it back whole, while parsing 1 KB payloads into jsonb cost about as much as the
    -- rest of the insert (measured); ad-hoc SQL can still use data::jsonb.
    -- stream_id uses the C collation: byte comparison in the (stream_id, stream_position) index.
    create table keel_events (
      global_position bigint not null,
      transaction_id xid8 not null default pg_current_xact_id(),
      stream_position bigint not null,
      event_id uuid not null,
      occurred_at timestamptz not null,
      -- millisecond precision, what a JS Date holds: readStream({upTo: event.recordedAt}) must include it
      recorded_at timestamptz not null default date_trunc('milliseconds', now()),
      schema_version integer not null,
      tenant_id text not null,
      stream_id text collate "C" not null,
      type text not null,
      actor_kind text not null,
      actor_id text not null,
      correlation_id text,
      causation_id text,
      traceparent text,
      data text not null,
      -- readAll / subscribe / headPosition: a range scan in global order.
      constraint keel_events_pkey primary key (global_position),
      -- idempotency on eventId; UUIDv7 ids keep inserts at the right edge of this index.
      constraint keel_events_event_id_key unique (event_id),
      -- readStream, the stream's current revision, and optimistic concurrency: two appends
      -- racing for the same revision cannot both commit.
      constraint keel_events_stream_key unique (stream_id, stream_position)
    );

    -- Per-stream metadata, written only by truncateBefore/deleteStream (appends never write here,
    -- so ingestion pays one index probe per stream, not an upsert). The current revision is
    -- max(stream_position), read from keel_events_stream_key.
    create table keel_streams (
      stream_id text collate "C" primary key,
      tenant_id text not null,
      truncate_before bigint,
      -- soft delete: the revision after the last one at deletion; reads start there
      soft_deleted_before bigint,
      tombstoned boolean not null default false,
      updated_at timestamptz not null default now()
    );

    -- Reserves p_count consecutive global positions for the calling transaction and returns the
    -- first. The transaction id is assigned under the same lock, so among store transactions a
    -- higher position always belongs to a higher transaction id: that is what lets readers use
    -- one number as checkpoint. Refuses a transaction that already has an id (it would break
    -- that order), which also means: one reservation per transaction.
    create function keel_reserve_positions(p_count bigint) returns bigint
    language plpgsql as $fn$
    declare
      v_first bigint;
    begin
      if pg_current_xact_id_if_assigned() is not null then
        raise exception 'keel_reserve_positions must be the first write of its transaction'
          using errcode = 'KL500';
      end if;
      perform pg_advisory_lock(${LOCK_KEY});
      begin
        perform pg_current_xact_id();
        v_first := nextval('keel_events_global_position_seq');
        if p_count > 1 then
          perform setval('keel_events_global_position_seq', v_first + p_count - 1);
        end if;
      exception when others or query_canceled then
        -- a session-level lock outlives the statement: never leave it behind
        perform pg_advisory_unlock(${LOCK_KEY});
        raise;
      end;
      perform pg_advisory_unlock(${LOCK_KEY});
      return v_first;
    end
    $fn$;

    -- One append call (one stream or a whole batch), atomically: the whole call is this one
    -- statement. Streams come as parallel arrays (p_stream_ids, p_expected); events as parallel
    -- arrays in append order, where p_event_stream is the 1-based index of the event's stream in
    -- p_stream_ids and p_event_offset its 0-based place within that stream's part of the call.
    -- Expected revision: >= 0 exact, -1 no stream, -2 any, -3 stream exists. A soft-deleted
    -- stream without new events counts as absent. Returns the first reserved global position
    -- (null without events), each stream's revision before the append (-1: no events yet) and
    -- recorded_at in ms since the epoch. Errors: KL409 wrong expected revision (detail: JSON
    -- {streamId, expected, actual}), KL410 tombstoned stream (detail: the stream id).
    create function keel_append(
      p_stream_ids text[], p_expected bigint[],
      p_event_stream int[], p_event_offset int[], p_event_stream_ids text[], p_event_ids uuid[],
      p_types text[], p_versions int[], p_tenants text[], p_occurred_at timestamptz[],
      p_actor_kinds text[], p_actor_ids text[], p_correlation_ids text[], p_causation_ids text[],
      p_traceparents text[], p_data text[],
      out first_position bigint, out base_revisions bigint[], out recorded_at_ms float8)
    -- No JIT: its compile time (tens of ms) dwarfs this function's work whenever the planner's
    -- guess at the array sizes crosses jit_above_cost. Generic plans: the same plan serves one
    -- event or ten thousand (index probes per stream), and re-planning the state query on every
    -- call cost more than running it (0.25 ms against 0.1 ms for a single event, measured).
    language plpgsql set jit = off set plan_cache_mode = force_generic_plan as $fn$
    declare
      v_state record;
      v_count int := coalesce(cardinality(p_event_ids), 0);
    begin
      -- deleteStream takes EXCLUSIVE on keel_streams, so it waits for appends in flight and no
      -- append slips in between its check and its commit (no event after a tombstone).
      -- Neither this lock nor the reads below assign a transaction id (see keel_reserve_positions).
      lock table keel_streams in row share mode;

      with st as materialized (
        select s.ord, s.stream_id, s.expected, m.soft_deleted_before, coalesce(m.tombstoned, false) as tombstoned,
               coalesce((select e.stream_position from keel_events e where e.stream_id = s.stream_id
                          order by e.stream_position desc limit 1), -1) as revision
          from unnest(p_stream_ids, p_expected) with ordinality as s(stream_id, expected, ord)
          left join keel_streams m on m.stream_id = s.stream_id
      ), judged as (
        select st.*, st.revision >= 0 and (st.soft_deleted_before is null or st.revision >= st.soft_deleted_before) as present
          from st
      )
      select array_agg(revision order by ord) as bases,
             (array_agg(stream_id order by ord) filter (where tombstoned))[1] as tombstoned_stream,
             (array_agg(json_build_object('streamId', stream_id, 'expected', expected,
                                          'actual', case when present then revision else -1 end) order by ord)
                filter (where case expected when -2 then false
                                            when -1 then present
                                            when -3 then not present
                                            else not present or revision <> expected end))[1] as conflict
        into v_state from judged;

      if v_state.tombstoned_stream is not null then
        raise exception 'stream % is deleted', v_state.tombstoned_stream
          using errcode = 'KL410', detail = v_state.tombstoned_stream;
      end if;
      if v_state.conflict is not null then
        raise exception 'wrong expected revision: %', v_state.conflict::text
          using errcode = 'KL409', detail = v_state.conflict::text;
      end if;

      base_revisions := v_state.bases;
      recorded_at_ms := extract(epoch from date_trunc('milliseconds', now())) * 1000;
      if v_count = 0 then
        return;
      end if;

      first_position := keel_reserve_positions(v_count);
      -- Set-returning functions in the select list run in lockstep without materializing
      -- (unnest in FROM would first copy every array into a tuplestore: 17% slower, measured).
      insert into keel_events (global_position, stream_position, event_id, occurred_at, schema_version,
                               tenant_id, stream_id, type, actor_kind, actor_id, correlation_id,
                               causation_id, traceparent, data)
        select first_position + u.ord - 1, v_state.bases[u.si] + 1 + u.off, u.id, u.occurred_at, u.version,
               u.tenant_id, u.stream_id, u.type, u.actor_kind, u.actor_id, u.correlation_id,
               u.causation_id, u.traceparent, u.data
          from (select generate_series(1, v_count) as ord, unnest(p_event_stream) as si, unnest(p_event_offset) as off,
                       unnest(p_event_stream_ids) as stream_id, unnest(p_event_ids) as id, unnest(p_types) as type,
                       unnest(p_versions) as version, unnest(p_tenants) as tenant_id,
                       unnest(p_occurred_at) as occurred_at, unnest(p_actor_kinds) as actor_kind,
                       unnest(p_actor_ids) as actor_id, unnest(p_correlation_ids) as correlation_id,
                       unnest(p_causation_ids) as causation_id, unnest(p_traceparents) as traceparent,
                       unnest(p_data) as data) u;
    end
    $fn$;
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`
    drop function if exists keel_append;
    drop function if exists keel_reserve_positions;
    drop table if exists keel_streams;
    drop table if exists keel_events;
    drop sequence if exists keel_events_global_position_seq;
  `);
}
