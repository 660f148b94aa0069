// keel_append takes an optional p_hints: per stream, the revision the caller last committed, so
// the function can skip that stream's index probe (src/store/postgres/revision-cache.ts says
// why a hint is safe). The probe was about 30% of the server's work per event in 1,000-stream
// batches. Callers passing the 16 arguments of the first version get the old behaviour.

/** The CREATE FUNCTION of keel_append, with p_hints (this migration) or without (the first one). */
const appendFunction = (hints) => `
    -- One append call (one stream or a whole batch), atomically: the whole call is this one
    -- statement. Streams come as parallel arrays (p_stream_ids, p_expected); events as parallel
    -- arrays in append order, where p_event_stream is the 1-based index of the event's stream in
    -- p_stream_ids and p_event_offset its 0-based place within that stream's part of the call.
    -- Expected revision: >= 0 exact, -1 no stream, -2 any, -3 stream exists. A soft-deleted
    -- stream without new events counts as absent. Returns the first reserved global position
    -- (null without events), each stream's revision before the append (-1: no events yet) and
    -- recorded_at in ms since the epoch. Errors: KL409 wrong expected revision (detail: JSON
    -- {streamId, expected, actual}), KL410 tombstoned stream (detail: the stream id).${
      hints
        ? `
    -- p_hints (optional, parallel to p_stream_ids): the stream's revision as the caller last
    -- committed it, or -1 for none. A hinted stream skips its index probe. A hint can only be
    -- the true revision or lower (revisions never go down); lower makes the insert hit
    -- keel_events_stream_key, and the caller retries without hints.`
        : ''
    }
    create function keel_append(
      p_stream_ids text[], p_expected bigint[],
      p_event_stream int[], p_event_offset int[], p_event_stream_ids text[], p_event_ids uuid[],
      p_types text[], p_versions int[], p_tenants text[], p_occurred_at timestamptz[],
      p_actor_kinds text[], p_actor_ids text[], p_correlation_ids text[], p_causation_ids text[],
      p_traceparents text[], p_data text[],${hints ? '\n      p_hints bigint[] default null,' : ''}
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
               ${hints ? 'case when s.hint >= 0 then s.hint else ' : ''}coalesce((select e.stream_position from keel_events e where e.stream_id = s.stream_id
                          order by e.stream_position desc limit 1), -1)${hints ? ' end' : ''} as revision
          from ${hints ? 'unnest(p_stream_ids, p_expected, p_hints) with ordinality as s(stream_id, expected, hint, ord)' : 'unnest(p_stream_ids, p_expected) with ordinality as s(stream_id, expected, ord)'}
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
`;

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    drop function keel_append(text[], bigint[], int[], int[], text[], uuid[], text[], int[], text[],
                              timestamptz[], text[], text[], text[], text[], text[], text[]);
    ${appendFunction(true)}
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`
    drop function keel_append(text[], bigint[], int[], int[], text[], uuid[], text[], int[], text[],
                              timestamptz[], text[], text[], text[], text[], text[], text[], bigint[]);
    ${appendFunction(false)}
  `);
}
