// Finished flow runs are pruned after KEEL_RUNNER_RETENTION_HOURS (their history lives on as events).

/** @param {import('knex').Knex} knex */
export async function up(knex) {
  await knex.raw(`
    create index keel_runner_flow_runs_done on keel_runner_flow_runs (updated_at) where state in ('completed', 'failed', 'dead');
  `);
}

/** @param {import('knex').Knex} knex */
export async function down(knex) {
  await knex.raw(`drop index if exists keel_runner_flow_runs_done;`);
}
