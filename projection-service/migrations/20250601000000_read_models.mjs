// Read models of projection-service: the audit trail (hash-chained, with signed checkpoints) and
// the dashboard. Plain ESM JavaScript: knex imports migrations itself, outside any TypeScript loader.
//
// Row-level security: every read-model table lets the `keel_reader` role see only the rows of the
// tenant set for the transaction (set_config('keel.tenant_id', $1, true)). Query code runs as that
// role (src/read/tenant-tx.ts); projectors write as the owner, which RLS does not restrict.
// A rebuild copies these tables (columns, constraints, indexes, policies, grants) into shadow
// tables, so a later migration that changes a table changes its rebuilds too.

const READER = 'keel_reader';

const readModels = {
  audit_events: `
    tenant_id text not null,
    global_position bigint not null,
    chain_seq bigint not null,
    stream_id text not null,
    stream_position bigint not null,
    event_id text not null,
    type text not null,
    schema_version integer not null,
    actor_kind text not null,
    actor_id text not null,
    subject text,
    occurred_at timestamptz not null,
    recorded_at timestamptz not null,
    correlation_id text,
    causation_id text,
    payload json not null,          -- json (not jsonb) keeps the hashed canonical text byte for byte
    hash bytea not null,
    constraint audit_events_pkey primary key (tenant_id, global_position)`,
  audit_chain_heads: `
    tenant_id text not null,
    seq bigint not null,
    hash bytea not null,
    position bigint not null,
    checkpoint_seq bigint not null default 0,
    checkpoint_at timestamptz,
    constraint audit_chain_heads_pkey primary key (tenant_id)`,
  dash_flow_runs: `
    tenant_id text not null,
    run_id text not null,
    flow_id text,
    flow_version integer,
    status text not null,
    trigger_event_id text,
    started_at timestamptz,
    finished_at timestamptz,
    duration_ms bigint,
    steps_succeeded integer not null,
    steps_failed integer not null,
    retries_scheduled integer not null,
    last_step_index integer,
    last_error text,
    started_position bigint not null,
    updated_position bigint not null,
    constraint dash_flow_runs_pkey primary key (tenant_id, run_id)`,
  dash_connectors: `
    tenant_id text not null,
    connector_id text not null,
    name text,
    kind text,
    status text not null,
    successes bigint not null,
    failures bigint not null,
    consecutive_failures integer not null,
    last_error text,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    circuit text not null,
    updated_position bigint not null,
    constraint dash_connectors_pkey primary key (tenant_id, connector_id)`,
  dash_flow_versions: `
    tenant_id text not null,
    flow_id text not null,
    version integer not null,
    name text,
    enabled boolean not null,
    step_connectors jsonb not null,
    updated_position bigint not null,
    constraint dash_flow_versions_pkey primary key (tenant_id, flow_id, version)`,
  dash_webhook_endpoints: `
    tenant_id text not null,
    webhook_id text not null,
    url text,
    event_types jsonb not null,
    active boolean not null,
    pending bigint not null,
    succeeded bigint not null,
    failed bigint not null,
    dead_lettered bigint not null,
    last_error text,
    last_delivered_at timestamptz,
    updated_position bigint not null,
    constraint dash_webhook_endpoints_pkey primary key (tenant_id, webhook_id)`,
  dash_webhook_deliveries: `
    tenant_id text not null,
    webhook_id text not null,
    event_id text not null,
    delivery_id text,
    event_type text,
    status text not null,
    attempts integer not null,
    last_http_status integer,
    last_error text,
    latency_ms bigint,
    next_attempt_at timestamptz,
    created_position bigint not null,
    updated_position bigint not null,
    updated_at timestamptz not null,
    constraint dash_webhook_deliveries_pkey primary key (tenant_id, webhook_id, event_id)`,
  dash_ingest_rates: `
    tenant_id text not null,
    hour timestamptz not null,
    event_type text not null,
    count bigint not null,
    constraint dash_ingest_rates_pkey primary key (tenant_id, hour, event_type)`,
  dash_positions: `
    tenant_id text not null,
    position bigint not null,
    constraint dash_positions_pkey primary key (tenant_id)`,
  audit_checkpoints: `
    tenant_id text not null,
    seq bigint not null,
    position bigint not null,
    hash bytea not null,
    signed_at timestamptz not null,
    key_id text not null,
    signature bytea not null,
    constraint audit_checkpoints_pkey primary key (tenant_id, seq)`,
};

// Every audit query is "one tenant, newest first, at most a few filters": each filter gets an
// index ending in global_position, so a page is one backward range scan with no sort (EXPLAIN
// findings in projection-service/README.md).
const indexes = [
  'create index audit_events_type on audit_events (tenant_id, type, global_position)',
  'create index audit_events_actor on audit_events (tenant_id, actor_id, global_position)',
  'create index audit_events_stream on audit_events (tenant_id, stream_id, global_position)',
  'create index audit_events_correlation on audit_events (tenant_id, correlation_id, global_position) where correlation_id is not null',
  'create index audit_events_recorded on audit_events (tenant_id, recorded_at, global_position)',
  'create index dash_flow_runs_recent on dash_flow_runs (tenant_id, started_position)',
  'create index dash_flow_runs_status on dash_flow_runs (tenant_id, status, started_position)',
  'create index dash_flow_runs_flow on dash_flow_runs (tenant_id, flow_id, started_position)',
  'create index dash_webhook_deliveries_id on dash_webhook_deliveries (tenant_id, webhook_id, delivery_id)',
  'create index dash_webhook_deliveries_status on dash_webhook_deliveries (tenant_id, status, created_position)',
  'create index dash_webhook_deliveries_recent on dash_webhook_deliveries (tenant_id, created_position)',
];

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  // Roles are cluster-wide: several Keel databases (and parallel test suites) may race to create it.
  await knex.raw(`
    do $$ begin
      create role ${READER} nologin;
    exception when duplicate_object or unique_violation then null;
    end $$`);
  // A non-superuser owner needs membership to SET ROLE to it; a superuser has it implicitly.
  await knex.raw(`
    do $$ begin
      if not exists (select 1 from pg_roles where rolname = current_user and rolsuper) then
        execute format('grant ${READER} to %I', current_user);
      end if;
    exception when others then null;
    end $$`);

  for (const [table, columns] of Object.entries(readModels)) {
    await knex.raw(`create table ${table} (${columns})`);
    await knex.raw(`alter table ${table} enable row level security`);
    await knex.raw(
      `create policy tenant_isolation on ${table} for select to ${READER} using (tenant_id = current_setting('keel.tenant_id', true))`,
    );
    await knex.raw(`grant select on ${table} to ${READER}`);
  }
  for (const sql of indexes) await knex.raw(sql);

  await knex.raw(`
    -- A rebuild in progress (or the last one): an interrupted rebuild resumes from its position.
    create table projection_rebuilds (
      projection text primary key,
      status text not null,
      position bigint not null default 0,
      target_position bigint not null default 0,
      events bigint not null default 0,
      started_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      finished_at timestamptz,
      error text
    );
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  for (const table of [...Object.keys(readModels), 'projection_rebuilds']) {
    await knex.raw(`drop table if exists ${table} cascade`);
  }
}
