// command-service bookkeeping. Plain ESM JavaScript: knex imports migrations itself.

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    -- Idempotency-Key records: the first answer to a POST, replayed to retries with the same key
    -- (also after a restart). The answer is stored encrypted with the scope tenant's data key,
    -- because some answers carry secrets shown once (API keys, webhook secrets).
    create table keel_idempotency (
      scope text not null,
      key text not null,
      -- sha-256 of method, route, params and body; null while a streamed body is still being read
      request_hash text,
      state text not null check (state in ('pending', 'done')),
      status integer,
      response text,
      created_at timestamptz not null default now(),
      -- a pending row whose holder died is taken over after this
      locked_until timestamptz,
      primary key (scope, key)
    );
    create index keel_idempotency_created on keel_idempotency (created_at);
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw('drop table if exists keel_idempotency');
}
