import type { Worker } from 'node:worker_threads';
import { HttpError, startTsWorker } from '@keel/shared-events';
import type { Logger } from 'pino';
import type { FromIngestThread, IngestThreadData, ToIngestThread } from './thread.ts';
import type { IngestJob, IngestOutcome } from './run.ts';

/**
 * NDJSON ingest on worker threads. Parsing, validating and encoding a record costs ~30 µs of CPU
 * and one thread tops out near one core; these threads (each with its own event store on the same
 * PostgreSQL database: the same appendBatch transactions, the same guarantees) let a request's
 * records be worked on another core while the request thread keeps serving HTTP.
 *
 * The request thread still authenticates, checks idempotency and hashes the body; it forwards the
 * body's bytes as they arrive, at most MAX_AHEAD chunks ahead of what the thread has taken, so a
 * slow database holds the client back instead of filling memory. A job goes to the thread with
 * the fewest running. A thread that dies fails its jobs with 503 (what was appended stays; a
 * retry with the same Idempotency-Key stores only the rest) and is replaced on next use.
 */
export interface IngestThreads {
  run(
    start: IngestJob,
    body: AsyncIterable<Buffer>,
  ): Promise<{ outcome: IngestOutcome; batches: { seconds: number; appended: number }[] }>;
  close(): Promise<void>;
}

const MAX_AHEAD = 8;

interface Job {
  resolve(r: { outcome: IngestOutcome; batches: { seconds: number; appended: number }[] }): void;
  reject(e: Error): void;
  /** Chunks sent and not yet taken. */
  ahead: number;
  /** Wakes the forwarding loop once the thread has taken a chunk. */
  onTaken?: () => void;
}

interface Thread {
  worker: Worker;
  jobs: Map<number, Job>;
}

export function createIngestThreads(options: { count: number; data: IngestThreadData; logger: Logger }): IngestThreads {
  const threads: (Thread | undefined)[] = new Array(options.count).fill(undefined);
  let nextJob = 1;
  let closing = false;

  const spawn = (slot: number): Thread => {
    const worker = startTsWorker(new URL('./thread.ts', import.meta.url), { workerData: options.data });
    const t: Thread = { worker, jobs: new Map() };
    const fail = (why: string) => {
      if (threads[slot] === t) threads[slot] = undefined;
      for (const j of t.jobs.values()) {
        j.onTaken?.();
        j.reject(
          new HttpError(
            'UNAVAILABLE',
            503,
            `ingest interrupted (${why}); retry with the same Idempotency-Key to store the rest without duplicates`,
          ),
        );
      }
      t.jobs.clear();
    };
    worker.on('message', (m: FromIngestThread) => {
      if (m.op === 'closed') return;
      const j = t.jobs.get(m.job);
      if (!j) return;
      if (m.op === 'taken') {
        j.ahead--;
        const w = j.onTaken;
        j.onTaken = undefined;
        w?.();
        return;
      }
      t.jobs.delete(m.job);
      j.onTaken?.(); // a forwarding loop waiting for room stops
      if (m.op === 'done') j.resolve({ outcome: m.outcome, batches: m.batches });
      else j.reject(new HttpError(m.error.code, m.error.status, m.error.message, m.error.details));
    });
    worker.on('error', (err) => {
      options.logger.error({ err: err.message }, 'ingest thread failed');
      fail(`ingest thread failed: ${err.message}`);
    });
    worker.on('exit', (code) => fail(`ingest thread exited (${code})`));
    threads[slot] = t;
    return t;
  };

  const pick = (): Thread => {
    let best = -1;
    for (let i = 0; i < threads.length; i++) {
      if (!threads[i]) return spawn(i);
      if (best < 0 || threads[i]!.jobs.size < threads[best]!.jobs.size) best = i;
    }
    return threads[best]!;
  };

  return {
    async run(start, body) {
      if (closing) throw new HttpError('UNAVAILABLE', 503, 'the service is shutting down');
      const t = pick();
      const id = nextJob++;
      const send = (m: ToIngestThread, transfer: ArrayBuffer[] = []) => t.worker.postMessage(m, transfer);
      const job = {} as Job;
      const result = new Promise<{ outcome: IngestOutcome; batches: { seconds: number; appended: number }[] }>(
        (resolve, reject) => {
          Object.assign(job, { resolve, reject, ahead: 0 });
        },
      );
      t.jobs.set(id, job);
      send({ op: 'start', job: id, start });
      try {
        for await (const chunk of body) {
          if (!t.jobs.has(id)) break; // the thread answered already (a failure): stop reading
          while (job.ahead >= MAX_AHEAD && t.jobs.has(id)) await new Promise<void>((r) => (job.onTaken = r));
          // a copy the thread owns (request chunks may be views into a shared pool)
          const bytes = new Uint8Array(chunk);
          job.ahead++;
          send({ op: 'chunk', job: id, bytes }, [bytes.buffer as ArrayBuffer]);
        }
        if (t.jobs.has(id)) send({ op: 'end', job: id });
      } catch (e) {
        if (t.jobs.has(id)) send({ op: 'abort', job: id, message: (e as Error).message });
      }
      return result;
    },
    async close() {
      closing = true;
      await Promise.all(
        threads.map(async (t) => {
          if (!t) return;
          await new Promise<void>((resolve) => {
            t.worker.on('message', (m: FromIngestThread) => m.op === 'closed' && resolve());
            t.worker.once('exit', () => resolve());
            t.worker.postMessage({ op: 'close' } satisfies ToIngestThread);
          });
          await t.worker.terminate();
        }),
      );
    },
  };
}
