import type { RecordedEvent } from '@keel/shared-events';

/**
 * The shared walk of a runner's intake over a bus batch, in log order. An event that changes the
 * runner's own state (a tenant, an endpoint, a flow, a connector; a redrive) is applied where it
 * stands; the events between such changes are matched (to endpoints, to flows) a run at a time.
 * So an event meets the state as it was when it was recorded, and matching costs one query per
 * run rather than one per event.
 */
export async function matchInLogOrder<T>(
  events: readonly RecordedEvent[],
  o: {
    /** How to apply `e` to the runner's state, when it changes it (the run before it is matched first). */
    change(e: RecordedEvent): (() => Promise<unknown>) | undefined;
    /** Whether `e` can lead to work at all. */
    matches(e: RecordedEvent): boolean;
    match(run: RecordedEvent[]): Promise<T[]>;
  },
): Promise<T[]> {
  const out: T[] = [];
  let run: RecordedEvent[] = [];
  for (const e of events) {
    const apply = o.change(e);
    if (apply) {
      if (run.length) out.push(...(await o.match(run)));
      run = [];
      await apply();
    }
    if (o.matches(e)) run.push(e);
  }
  if (run.length) out.push(...(await o.match(run)));
  return out;
}
