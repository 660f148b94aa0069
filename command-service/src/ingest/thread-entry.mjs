// Entry of an ingest thread. Plain JavaScript, so the thread starts without a TypeScript loader
// whoever started the process (tsx, vitest, node); it then registers tsx for this thread and
// loads the TypeScript worker.
import { register } from 'tsx/esm/api';

register();
await import('./thread.ts');
