/**
 * An ingest thread (see threads.ts): its own PostgreSQL event store on the service's database,
 * running runIngest on NDJSON bodies whose bytes the request thread forwards as they arrive.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createSchemaRegistry, getPostgreSQLEventStore, HttpError, type EventStore } from '@keel/shared-events';
import type { CommandServiceConfig } from '../config.ts';
import { ndjsonItems, runIngest, type IngestJob, type IngestOutcome } from './run.ts';

export interface IngestThreadData {
  databaseUrl: string;
  poolSize: number;
  ingest: CommandServiceConfig['ingest'];
}

export type ToIngestThread =
  | { op: 'start'; job: number; start: IngestJob }
  | { op: 'chunk'; job: number; bytes: Uint8Array }
  | { op: 'end'; job: number }
  /** The body could not be read to its end (the client went away): the job stops like a failed read. */
  | { op: 'abort'; job: number; message: string }
  | { op: 'close' };

export type FromIngestThread =
  /** A chunk was taken from the job's queue: the request thread may send another. */
  | { op: 'taken'; job: number }
  | { op: 'done'; job: number; outcome: IngestOutcome; batches: { seconds: number; appended: number }[] }
  | { op: 'failed'; job: number; error: { status: number; code: string; message: string; details?: unknown } }
  | { op: 'closed' };

const data = workerData as IngestThreadData;
const store: EventStore = getPostgreSQLEventStore({
  connectionString: data.databaseUrl,
  registry: createSchemaRegistry(),
  poolSize: data.poolSize,
});
const port = parentPort!;
const post = (m: FromIngestThread) => port.postMessage(m);

/** A job's body: chunks queued by the request thread, read by ndjsonLines. */
class ChunkQueue implements AsyncIterable<Buffer> {
  private chunks: Buffer[] = [];
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  constructor(private readonly job: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.poke();
  }
  end(): void {
    this.ended = true;
    this.poke();
  }
  fail(e: Error): void {
    this.failure = e;
    this.poke();
  }
  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    for (;;) {
      if (this.failure) throw this.failure;
      const next = this.chunks.shift();
      if (next) {
        post({ op: 'taken', job: this.job });
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

const jobs = new Map<number, ChunkQueue>();

async function run(job: number, start: IngestJob, body: ChunkQueue): Promise<void> {
  const batches: { seconds: number; appended: number }[] = [];
  const measured = {
    async appendBatch(appends: Parameters<EventStore['appendBatch']>[0]) {
      const t0 = performance.now();
      const r = await store.appendBatch(appends);
      batches.push({ seconds: (performance.now() - t0) / 1000, appended: r.appended });
      return r;
    },
  };
  try {
    const outcome = await runIngest({ store: measured, ingest: data.ingest }, ndjsonItems(body, data.ingest), start);
    post({ op: 'done', job, outcome, batches });
  } catch (e) {
    const err =
      e instanceof HttpError
        ? { status: e.statusCode, code: e.code, message: e.message, details: e.details }
        : { status: 503, code: 'UNAVAILABLE', message: (e as Error).message };
    post({ op: 'failed', job, error: err });
  } finally {
    jobs.delete(job);
  }
}

port.on('message', (m: ToIngestThread) => {
  switch (m.op) {
    case 'start': {
      const q = new ChunkQueue(m.job);
      jobs.set(m.job, q);
      void run(m.job, m.start, q);
      return;
    }
    case 'chunk':
      jobs.get(m.job)?.push(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
      return;
    case 'end':
      jobs.get(m.job)?.end();
      return;
    case 'abort':
      jobs.get(m.job)?.fail(new Error(m.message));
      return;
    case 'close':
      void store.close().finally(() => post({ op: 'closed' }));
      return;
  }
});
