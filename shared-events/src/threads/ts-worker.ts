import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * A worker thread running the TypeScript module `module` (a file URL, e.g.
 * `new URL('./my-thread.ts', import.meta.url)`), through the shared plain-JavaScript entry
 * ts-worker-entry.mjs: the relay's producer thread, the runners' HTTP thread, the ingest threads.
 */
export function startTsWorker(module: URL, options: Omit<WorkerOptions, 'argv'> = {}): Worker {
  return new Worker(new URL('./ts-worker-entry.mjs', import.meta.url), { ...options, argv: [module.href] });
}
