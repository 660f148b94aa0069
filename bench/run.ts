/**
 * `npm run bench -- <name> [args]`: runs bench/<name>.ts, whose default export returns the
 * figures; they are printed and written to bench/results/<name>-<timestamp>.json.
 * Every benchmark measures its baseline in the same run and reports the ratio.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'support.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''));
const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|')}> [options]`);
  process.exit(2);
}
const mod = (await import(resolve(here, `${name}.ts`))) as { default: (args: string[]) => Promise<unknown> };
const result = await mod.default(args);
const out = resolve(here, 'results', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
mkdirSync(dirname(out), { recursive: true });
const json = JSON.stringify({ bench: name, at: new Date().toISOString(), machine: machineInfo(), result }, null, 2);
writeFileSync(out, json);
console.log(json);
console.log(`written to ${out}`);
process.exit(0);

function machineInfo(): Record<string, unknown> {
  return { node: process.version, platform: process.platform, cpus: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30) };
}
