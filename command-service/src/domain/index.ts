export * from './decider.ts';
export * from './tenant.ts';
export * from './access.ts';
export * from './connector.ts';
export * from './flow.ts';
export * from './webhook.ts';
export * from './source.ts';
