// Bus and relay bookkeeping (shared-events/src/bus, shared-events/src/relay).
// Plain ESM JavaScript: knex imports migrations itself, outside any TypeScript loader.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    -- One row per single-active worker: the relay of a store ('relay:<topic>') and each consumer
    -- group of the PostgreSQL bus ('group:<name>'). The row is both the lease (holder, expiry,
    -- fencing token) and the checkpoint, so a checkpoint can only be written by the lease holder.
    create table keel_bus_checkpoints (
      name text primary key,
      position bigint not null default 0,
      holder text,
      fencing bigint not null default 0,
      lease_expires_at timestamptz,
      updated_at timestamptz not null default now()
    );

    -- Per projector and tenant: the global position of the last event applied. Written in the
    -- same transaction as the read model, so a redelivered or re-published event is skipped.
    create table keel_projector_positions (
      projector text not null,
      tenant_id text not null,
      position bigint not null default 0,
      updated_at timestamptz not null default now(),
      primary key (projector, tenant_id)
    );

    -- Dead letters of the PostgreSQL bus (the Kafka bus uses the keel.events.v1.dlq topic).
    create table keel_bus_dead_letters (
      id bigserial primary key,
      consumer_group text not null,
      event_id text not null,
      tenant_id text not null,
      stream_id text not null,
      global_position bigint not null,
      event_type text not null,
      reason text not null,
      attempts integer not null,
      event jsonb not null,
      dead_lettered_at timestamptz not null default now()
    );
    create index keel_bus_dead_letters_group on keel_bus_dead_letters (consumer_group, id);
    create index keel_bus_dead_letters_tenant on keel_bus_dead_letters (tenant_id, id);
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`
    drop table if exists keel_bus_dead_letters;
    drop table if exists keel_projector_positions;
    drop table if exists keel_bus_checkpoints;
  `);
}
