// keel_append_begin: the first half of a large append, whose events then go in through COPY in
// the same transaction (src/store/postgres/append.ts, copyAppend). It judges the streams exactly
// as keel_append does (same expected-revision codes, hints, errors KL409 and KL410) and reserves
// the call's global positions, but inserts nothing: the caller numbers the events from what it
// returns and COPYs them into keel_events. Why: keel_append receives every column as an array
// and unnests them row by row, which cost the server about 50% more per event than the COPY
// (measured: 14.8 against 10 µs per event on 1,000-event calls).

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    -- p_stream_ids, p_expected, p_hints: as for keel_append (p_hints may be null). p_count: how
    -- many events the caller will COPY; that many positions are reserved (none for 0).
    -- Must be the first write of its transaction (keel_reserve_positions says why), and the
    -- COPY must follow in that transaction: the positions and the revisions judged here hold
    -- only until it ends (the stream key catches a concurrent writer, as with keel_append).
    create function keel_append_begin(
      p_stream_ids text[], p_expected bigint[], p_hints bigint[], p_count int,
      out first_position bigint, out base_revisions bigint[], out recorded_at_ms float8)
    language plpgsql set jit = off set plan_cache_mode = force_generic_plan as $fn$
    declare
      v_state record;
    begin
      lock table keel_streams in row share mode;

      with st as materialized (
        select s.ord, s.stream_id, s.expected, m.soft_deleted_before, coalesce(m.tombstoned, false) as tombstoned,
               case when s.hint >= 0 then s.hint else coalesce((select e.stream_position from keel_events e where e.stream_id = s.stream_id
                          order by e.stream_position desc limit 1), -1) end as revision
          from unnest(p_stream_ids, p_expected, coalesce(p_hints, array_fill(-1::bigint, array[cardinality(p_stream_ids)])))
                 with ordinality as s(stream_id, expected, hint, ord)
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
      -- recorded_at of every row COPYed in this transaction (its column default uses now(),
      -- the transaction's start time, as this does)
      recorded_at_ms := extract(epoch from date_trunc('milliseconds', now())) * 1000;
      if p_count > 0 then
        first_position := keel_reserve_positions(p_count);
      end if;
    end
    $fn$;
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop function keel_append_begin(text[], bigint[], bigint[], int)');
}
