import pg from 'pg';
const c = new pg.Client('postgres://postgres@127.0.0.1:5432/keel_prof'); await c.connect();
const mod = await import('./shared-events/src/store/postgres/read.ts');
const src = (await import('node:fs')).readFileSync('./shared-events/src/store/postgres/read.ts', 'utf8');
const { EVENT_COLUMNS } = await import('./shared-events/src/store/postgres/rows.ts');
const XMIN = "(select pg_snapshot_xmin(pg_current_snapshot()))"; const MAX_INT8 = "9223372036854775807"; const NO_EVENT = new Array(15).fill("null").join(", ");
const FILTERED = eval('`' + src.split('const FILTERED_SQL = `')[1]!.split('`;')[0] + '`');
const ALL = eval('`' + src.split('const ALL_SQL = `')[1]!.split('`;')[0] + '`');
for (const [name, sql, vals] of [['filtered', FILTERED, [0, 1000, 'x', null, null, 10000]], ] as const) {
  await c.query(`prepare ${name} as ${sql}`);
  for (let i = 0; i < 7; i += 6) {
    const r = await c.query(`explain (analyze, format json) execute ${name}(${vals.map((v) => v === null ? 'null' : typeof v === 'string' ? `'${v}'` : v).join(',')})`);
    const plan = r.rows[0]['QUERY PLAN'][0];
    console.log(name, i, 'cost', plan.Plan['Total Cost'], 'exec ms', plan['Execution Time'], 'jit', plan.JIT ? JSON.stringify(plan.JIT.Timing) : 'none');
  }
}
await c.end();
void mod;
