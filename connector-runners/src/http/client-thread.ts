/**
 * The HTTP client's thread (see threadHttpClient in client.ts): runs the in-thread client and
 * answers each request with its result. Requests and results travel in batches, one message per
 * turn of either event loop, so the message cost is paid per batch rather than per call.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createHttpClient, type HttpClientOptions, type HttpRequest, type HttpResult } from './client.ts';

export type ToHttpThread = { op: 'send'; calls: { id: number; req: HttpRequest }[] } | { op: 'close' };
export type FromHttpThread = { results: { id: number; result: HttpResult }[] } | { closed: true };

const client = createHttpClient(workerData as HttpClientOptions);
let done: { id: number; result: HttpResult }[] = [];
let flushing = false;

function answer(id: number, result: HttpResult): void {
  done.push({ id, result });
  if (flushing) return;
  flushing = true;
  setImmediate(() => {
    flushing = false;
    const results = done;
    done = [];
    parentPort!.postMessage({ results } satisfies FromHttpThread);
  });
}

parentPort!.on('message', (msg: ToHttpThread) => {
  if (msg.op === 'close') {
    void client.close().finally(() => parentPort!.postMessage({ closed: true } satisfies FromHttpThread));
    return;
  }
  // send never throws: every failure is a result
  for (const { id, req } of msg.calls) void client.send(req).then((r) => answer(id, r));
});
