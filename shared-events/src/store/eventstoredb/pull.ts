import type { Readable } from 'node:stream';

/**
 * Pull-based reading of an object-mode Readable, one item at a time, with the stream's own
 * buffer visible (`buffered`) so a consumer can tell "more is ready now" from "wait for more".
 * Unlike `for await`, ending early does not destroy the stream behind the caller's back, and the
 * stream's end, close and error are all observed.
 */
export interface Puller<T> {
  /** The next item, or `undefined` once the stream ended or closed. Throws the stream's error. */
  next(): Promise<T | undefined>;
  /** Items already buffered and readable without waiting. */
  readonly buffered: number;
}

export function puller<T>(stream: Readable): Puller<T> {
  let error: unknown;
  let failed = false;
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  stream.on('readable', notify);
  stream.on('end', () => {
    ended = true;
    notify();
  });
  stream.on('close', () => {
    ended = true;
    notify();
  });
  stream.on('error', (err) => {
    if (!failed) {
      failed = true;
      error = err;
    }
    notify();
  });
  return {
    async next() {
      for (;;) {
        const item = stream.destroyed ? null : (stream.read() as T | null);
        if (item !== null) return item;
        if (failed) throw error;
        if (ended) return undefined;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    get buffered() {
      return stream.readableLength;
    },
  };
}
