// Authentication and encryption bookkeeping (shared-events/src/auth, shared-events/src/crypto).
// Plain ESM JavaScript: knex imports migrations itself, outside any TypeScript loader.
//
// keel_auth_* tables are an inline projection of the tenant-* and access-* events (the events stay
// the source of truth; the tables can be rebuilt from them). They exist so that authenticating a
// request is one indexed lookup on the write side and on the read side alike.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    create table keel_auth_tenants (
      tenant_id text primary key,
      name text not null,
      status text not null check (status in ('active', 'suspended', 'erased')),
      -- global position of the last event applied: a replayed older event never overwrites a newer one
      position bigint not null,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );

    create table keel_auth_api_keys (
      key_id text primary key,
      tenant_id text not null,
      name text not null,
      role text not null check (role in ('owner', 'admin', 'operator', 'auditor', 'viewer')),
      -- scrypt$N$r$p$salt$hash: the secret itself is never stored
      secret_hash text not null,
      created_at timestamptz not null default now(),
      revoked_at timestamptz,
      position bigint not null
    );
    create index keel_auth_api_keys_tenant on keel_auth_api_keys (tenant_id);

    -- Roles granted to users (SSO identities authenticated by JWT). A revoked role keeps its row
    -- (granted = false) so that replaying the older grant cannot bring it back.
    create table keel_auth_user_roles (
      tenant_id text not null,
      user_id text not null,
      role text not null check (role in ('owner', 'admin', 'operator', 'auditor', 'viewer')),
      granted boolean not null,
      position bigint not null,
      primary key (tenant_id, user_id, role)
    );

    -- Catch-up checkpoints of the auth projection (one row per projection name).
    create table keel_auth_checkpoints (
      name text primary key,
      position bigint not null default 0,
      updated_at timestamptz not null default now()
    );

    -- Per-tenant (and per data subject) data keys, AES-256-GCM, wrapped by the master key.
    -- Crypto-shredding sets wrapped_key to null: every ciphertext made with it becomes unreadable,
    -- while the events that hold those ciphertexts (and the audit hash chain over them) stay intact.
    create table keel_data_keys (
      tenant_id text not null,
      -- '' is the tenant-wide key; otherwise a data subject (e.g. a user id)
      subject_id text not null default '',
      wrapped_key bytea,
      -- which master key wrapped it (sha-256 prefix), to fail clearly on a wrong KEEL_MASTER_KEY
      master_key_id text not null,
      created_at timestamptz not null default now(),
      destroyed_at timestamptz,
      primary key (tenant_id, subject_id),
      check ((wrapped_key is null) = (destroyed_at is not null))
    );
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`
    drop table if exists keel_data_keys;
    drop table if exists keel_auth_checkpoints;
    drop table if exists keel_auth_user_roles;
    drop table if exists keel_auth_api_keys;
    drop table if exists keel_auth_tenants;
  `);
}
