// Entry of every worker thread that runs a TypeScript module (see ts-worker.ts). Plain JavaScript,
// so the thread starts without a TypeScript loader whoever started the process (tsx, vitest,
// node); it registers tsx for this thread, then imports the module named in its argv.
import { argv } from 'node:process';
import { register } from 'tsx/esm/api';

register();
await import(argv[2]);
