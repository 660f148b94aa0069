// Runner-owned state (connector-runners). Built only from events on the bus and from the
// runners' own work: never written by another service, never read across tenants.
// Plain ESM JavaScript: knex imports migrations itself, outside any TypeScript loader.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    -- Tenants the runners must hold back (suspended) or stop serving (erased).
    create table keel_runner_tenants (
      tenant_id text primary key,
      status text not null check (status in ('active', 'suspended', 'erased')),
      position bigint not null,
      updated_at timestamptz not null default now()
    );

    -- Outbound webhook endpoints (WebhookEndpointRegistered/Updated/Removed). The secret stays as
    -- the event carries it (encrypted); the runner decrypts it only to sign a delivery.
    create table keel_runner_webhook_endpoints (
      tenant_id text not null,
      webhook_id text not null,
      url text not null,
      event_types text[] not null,
      secret text not null,
      status text not null check (status in ('active', 'removed')),
      position bigint not null,
      updated_at timestamptz not null default now(),
      primary key (tenant_id, webhook_id)
    );

    -- One row per (endpoint, event): the work queue of deliveries. delivery_id is derived from
    -- webhook_id + event_id, so a redelivered bus event finds its row instead of making a second one.
    -- due_at is when a pending row may be attempted, or when an in-flight row's lease runs out
    -- (a crashed runner's work is taken over then). lease_token fences results: a runner whose
    -- lease was taken over cannot overwrite the new owner's outcome.
    create table keel_runner_deliveries (
      delivery_id uuid primary key,
      tenant_id text not null,
      webhook_id text not null,
      event_id text not null,
      event_type text not null,
      event_recorded_at timestamptz not null,
      correlation_id text,
      body text not null,
      state text not null check (state in ('pending', 'in_flight', 'succeeded', 'dead')),
      attempt integer not null default 0,
      -- attempt count when the delivery was last redriven: each redrive grants a fresh set of attempts
      attempts_base integer not null default 0,
      -- a redrive that arrived while the last attempt's outcome was still being recorded
      redrive_requested boolean not null default false,
      due_at timestamptz not null,
      lease_token uuid,
      last_status integer,
      last_error text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index keel_runner_deliveries_due on keel_runner_deliveries (due_at) where state in ('pending', 'in_flight');
    create index keel_runner_deliveries_dead on keel_runner_deliveries (tenant_id, webhook_id, updated_at) where state = 'dead';
    create index keel_runner_deliveries_done on keel_runner_deliveries (updated_at) where state = 'succeeded';

    -- Connectors (ConnectorInstalled/CredentialsRotated/Paused/Resumed/Removed); credentials encrypted.
    create table keel_runner_connectors (
      tenant_id text not null,
      connector_id text not null,
      kind text not null,
      name text not null,
      config jsonb not null,
      credentials text,
      status text not null check (status in ('active', 'paused', 'removed')),
      position bigint not null,
      updated_at timestamptz not null default now(),
      primary key (tenant_id, connector_id)
    );

    -- Flows and their versions (FlowDefined is version 1; FlowVersionPublished adds the next and makes
    -- it current; FlowEnabled/FlowDisabled). New runs use the current version.
    create table keel_runner_flows (
      tenant_id text not null,
      flow_id text not null,
      name text not null,
      enabled boolean not null default false,
      current_version integer not null,
      trigger_event_type text,
      position bigint not null,
      updated_at timestamptz not null default now(),
      primary key (tenant_id, flow_id)
    );
    create index keel_runner_flows_trigger on keel_runner_flows (tenant_id, trigger_event_type) where enabled;
    create table keel_runner_flow_versions (
      tenant_id text not null,
      flow_id text not null,
      version integer not null,
      definition jsonb not null,
      primary key (tenant_id, flow_id, version)
    );

    -- One row per flow run (run_id derived from flow_id + trigger event id): where it is, what the
    -- steps so far produced, when to try again. Same due_at / lease_token scheme as deliveries.
    create table keel_runner_flow_runs (
      run_id uuid primary key,
      tenant_id text not null,
      flow_id text not null,
      flow_version integer not null,
      trigger_event_id text not null,
      correlation_id text,
      trigger jsonb not null,
      state text not null check (state in ('pending', 'in_flight', 'completed', 'failed', 'dead')),
      started boolean not null default false,
      step_index integer not null default 0,
      attempt integer not null default 0,
      outputs jsonb not null default '[]',
      due_at timestamptz not null,
      lease_token uuid,
      last_error text,
      started_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index keel_runner_flow_runs_due on keel_runner_flow_runs (due_at) where state in ('pending', 'in_flight');
    create index keel_runner_flow_runs_tenant on keel_runner_flow_runs (tenant_id, started_at);

    -- Circuit breakers that are not closed, so a restarted runner does not hammer a destination
    -- it had just given up on. Keyed by "<tenant>|<origin>".
    create table keel_runner_breakers (
      destination text primary key,
      state text not null,
      consecutive_failures integer not null,
      open_until timestamptz,
      open_ms integer not null,
      updated_at timestamptz not null default now()
    );
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`
    drop table if exists keel_runner_breakers;
    drop table if exists keel_runner_flow_runs;
    drop table if exists keel_runner_flow_versions;
    drop table if exists keel_runner_flows;
    drop table if exists keel_runner_connectors;
    drop table if exists keel_runner_deliveries;
    drop table if exists keel_runner_webhook_endpoints;
    drop table if exists keel_runner_tenants;
  `);
}
