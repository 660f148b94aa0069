import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * Real local HTTP servers for the runner suites: each records what it received (headers and raw
 * body) and answers as the test says.
 */
export interface Received {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

export type Behaviour = (req: IncomingMessage, res: ServerResponse, body: string, n: number) => void | Promise<void>;

export interface TestServer {
  url: string;
  received: Received[];
  /** Change how the server answers from now on. */
  behave(b: Behaviour): void;
  /** Resolves once `n` requests have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startServer(initial: Behaviour = (_q, res) => void res.end('ok')): Promise<TestServer> {
  let behaviour = initial;
  const received: Received[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, at: Date.now() });
      for (const w of waiters.filter((w) => received.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      void Promise.resolve(behaviour(req, res, body, received.length)).catch(() => res.destroy());
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    behave: (b) => {
      behaviour = b;
    },
    waitFor: (n, timeoutMs = 30_000) =>
      received.length >= n
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`server got ${received.length} of ${n} requests`)), timeoutMs);
            waiters.push({
              n,
              resolve: () => {
                clearTimeout(t);
                resolve();
              },
            });
          }),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export const answer =
  (status: number, body = '', headers: Record<string, string> = {}): Behaviour =>
  (_q, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

/** Never answers (until the server closes). */
export const hang: Behaviour = () => undefined;

export const slow =
  (ms: number, status = 200): Behaviour =>
  (_q, res) => {
    setTimeout(() => {
      res.writeHead(status);
      res.end('late');
    }, ms);
  };

/** Drops the connection without an answer. */
export const closeConnection: Behaviour = (req) => {
  req.socket.destroy();
};
