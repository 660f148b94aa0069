import type { KeelRuntime } from '@keel/shared-events';
import { projectionNames } from '../db/schema.ts';
import { rebuildProjection } from '../rebuild/rebuild.ts';
import { parseArgs, has, write } from './args.ts';
import type { CliArgs } from './args.ts';
import { progressPrinter } from './progress.ts';

/**
 * `keel projections rebuild <audit|dashboard> [--json]`: replays the store into shadow tables
 * with a progress bar on stderr (events/s, ETA), then swaps them in. Ctrl-C stops after the
 * batch in flight; running the command again resumes. Exit code 0 = swapped in, 1 = failed,
 * 2 = usage, 130 = interrupted.
 */
export async function projectionsRebuildCommand(
  runtime: Pick<KeelRuntime, 'pool' | 'store' | 'logger'>,
  args: CliArgs,
  out: NodeJS.WritableStream,
  options: { progress?: NodeJS.WritableStream; signal?: AbortSignal } = {},
): Promise<number> {
  const parsed = parseArgs(args);
  const name = parsed.positional[0];
  if (!name || !(projectionNames as readonly string[]).includes(name)) {
    write(process.stderr, `usage: keel projections rebuild <${projectionNames.join('|')}> [--json]`);
    return 2;
  }
  const printer = progressPrinter(options.progress ?? process.stderr);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  options.signal?.addEventListener('abort', onSigint);
  process.once('SIGINT', onSigint);
  try {
    const result = await rebuildProjection(runtime, name, {
      onProgress: (p) => printer.update(p),
      signal: controller.signal,
    });
    printer.done();
    if (has(parsed, 'json')) write(out, JSON.stringify(result));
    else
      write(
        out,
        `rebuilt ${name}: ${result.totalEvents.toLocaleString('en-US')} events up to position ${result.position} ` +
          `in ${(result.durationMs / 1000).toFixed(1)} s (${result.eventsPerSecond.toLocaleString('en-US')} events/s)` +
          (result.resumedFrom !== undefined ? `, resumed from position ${result.resumedFrom}` : '') +
          '; swapped in',
      );
    return 0;
  } catch (e) {
    printer.done();
    const code = (e as { code?: string }).code;
    write(
      out,
      `rebuild of ${name} ${code === 'REBUILD_INTERRUPTED' ? 'interrupted' : 'failed'}: ${(e as Error).message}`,
    );
    return code === 'REBUILD_INTERRUPTED' ? 130 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    options.signal?.removeEventListener('abort', onSigint);
  }
}
