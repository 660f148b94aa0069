export { getEventStoreDBEventStore } from './store.ts';
export type { EventStoreDBEventStoreOptions } from './store.ts';
