import type { Logger } from 'pino';

/**
 * Polls a scheduled-work table: runs `tick` now and then, at once again while it reports more
 * work, every `pollMs` when idle, and right away on `kick` (new work was just written). This is
 * what makes delayed retries cheap: they wait as rows, not as timers or blocked partitions.
 */
export interface WorkLoop {
  kick(): void;
  /** Waits for the tick in progress; no new tick starts. */
  stop(): Promise<void>;
}

export function startWorkLoop(options: {
  name: string;
  pollMs: number;
  logger: Logger;
  tick: () => Promise<boolean>;
}): WorkLoop {
  let stopped = false;
  let wake: (() => void) | undefined;
  let kicked = false;
  let failures = 0;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (kicked) {
        kicked = false;
        resolve();
        return;
      }
      const t = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(t);
        wake = undefined;
        resolve();
      };
    });
  const done = (async () => {
    while (!stopped) {
      let more = false;
      try {
        more = await options.tick();
        failures = 0;
      } catch (err) {
        failures++;
        options.logger.error({ loop: options.name, err: (err as Error).message }, 'work loop tick failed');
      }
      if (stopped) break;
      if (!more) await sleep(failures ? Math.min(5_000, options.pollMs * 2 ** failures) : options.pollMs);
    }
  })();
  return {
    kick() {
      if (wake) wake();
      else kicked = true;
    },
    async stop() {
      stopped = true;
      wake?.();
      await done;
    },
  };
}

/**
 * Group commit: outcomes pushed while a write is in progress are written together by the next
 * one. At high rates a single write carries hundreds of outcomes; at low rates each is written
 * at once. `push` resolves when the item's write finished (or failed: then with the error).
 */
export interface GroupCommitter<T> {
  push(item: T): Promise<void>;
  /** Resolves when everything pushed so far is written. */
  drain(): Promise<void>;
}

export function groupCommitter<T>(write: (items: T[]) => Promise<void>, maxBatch = 1000): GroupCommitter<T> {
  let queue: { item: T; resolve: () => void; reject: (e: unknown) => void }[] = [];
  let running: Promise<void> | undefined;
  const run = async () => {
    while (queue.length) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      try {
        await write(batch.map((b) => b.item));
        for (const b of batch) b.resolve();
      } catch (e) {
        for (const b of batch) b.reject(e);
      }
    }
  };
  const start = () => {
    running ??= run().finally(() => {
      running = undefined;
      if (queue.length) start();
    });
  };
  return {
    push(item) {
      return new Promise<void>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        start();
      });
    },
    async drain() {
      while (running) await running;
    },
  };
}
