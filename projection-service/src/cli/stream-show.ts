import type { KeelRuntime, RecordedEvent } from '@keel/shared-events';
import { parseStreamName } from '@keel/shared-events';
import { foldStream, parseReplayPoint, streamHistory, toReplayEvent } from '../replay/fold.ts';
import { flag, has, parseArgs, write } from './args.ts';
import type { CliArgs } from './args.ts';

/**
 * `keel stream show <streamId> [--at <revision|ISO time>] [--history] [--json]`: the stream's
 * state folded up to that point (what GET /streams/:streamId?at= answers), or with --history
 * every event with the state after it and what changed. Exit 0, 1 = no such stream, 2 = usage.
 */
export async function streamShowCommand(
  runtime: Pick<KeelRuntime, 'store'>,
  args: CliArgs,
  out: NodeJS.WritableStream,
): Promise<number> {
  const parsed = parseArgs(args);
  const streamId = parsed.positional[0];
  const at = parseReplayPoint(flag(parsed, 'at'));
  if (!streamId || !parseStreamName(streamId) || at === 'invalid') {
    write(process.stderr, 'usage: keel stream show <streamId> [--at <revision|ISO-8601 time>] [--history] [--json]');
    return 2;
  }
  const events: RecordedEvent[] = await runtime.store.readStream(streamId, {
    ...(at && 'revision' in at ? { toRevision: at.revision } : {}),
    ...(at && 'time' in at ? { upTo: at.time } : {}),
  });
  if (events.length === 0) {
    write(out, `stream ${streamId}: no events${at ? ' up to that point' : ''}`);
    return 1;
  }
  const json = has(parsed, 'json');
  if (has(parsed, 'history')) {
    const steps = streamHistory(streamId, events);
    if (json) write(out, JSON.stringify({ streamId, steps }));
    else {
      for (const s of steps) {
        write(
          out,
          `#${s.event.revision} ${s.event.type}  @${s.event.position}  ${s.event.recordedAt}  by ${s.event.actor.kind}:${s.event.actor.id}`,
        );
        for (const c of s.changes) {
          const v = (x: unknown) => JSON.stringify(x);
          write(
            out,
            c.op === 'added'
              ? `    + ${c.path} = ${v(c.after)}`
              : c.op === 'removed'
                ? `    - ${c.path} (was ${v(c.before)})`
                : `    ~ ${c.path}: ${v(c.before)} → ${v(c.after)}`,
          );
        }
      }
    }
    return 0;
  }
  const state = foldStream(streamId, events);
  const last = events[events.length - 1]!;
  if (json)
    write(out, JSON.stringify({ streamId, revision: last.streamPosition, state, events: events.map(toReplayEvent) }));
  else {
    write(
      out,
      `stream ${streamId} at revision ${last.streamPosition} (position ${last.globalPosition}, ${last.recordedAt.toISOString()})`,
    );
    write(out, 'events:');
    for (const e of events)
      write(out, `  #${e.streamPosition} ${e.type}  @${e.globalPosition}  ${e.recordedAt.toISOString()}`);
    write(out, 'state:');
    write(out, JSON.stringify(state, null, 2).replace(/^/gm, '  '));
  }
  return 0;
}
