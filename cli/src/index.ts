export { startDevServer } from './dev.ts';
export type { DevServer } from './dev.ts';
export { createRuntime, allMigrations } from './runtime.ts';
export type { ProcessRuntime, RuntimeOptions } from './runtime.ts';
