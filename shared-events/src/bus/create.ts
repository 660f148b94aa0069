import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { BaseConfig, Profile } from '../config.ts';
import type { MigrationSet } from '../db/migrate.ts';
import type { EventStore } from '../store/port.ts';
import { createKafkaBus, type KafkaBusOptions } from './kafka/bus.ts';
import type { BusCodec } from './kafka/messages.ts';
import { createPostgresBus, type PostgresBusOptions } from './postgres/bus.ts';
import type { EventBus } from './port.ts';

/**
 * The tables of the bus, the projector positions and the relay: run them on the database that holds
 * the read models (which is also the store's database in every PostgreSQL-backed profile).
 */
export const busMigrations: MigrationSet = {
  directory: resolve(dirname(fileURLToPath(import.meta.url)), '../../migrations/bus'),
  tableName: 'keel_migrations_bus',
};

/** DESIGN.md profiles: embedded and postgres fan out through the store's own log, kafka and distributed through Kafka. */
export function busKindFor(profile: Profile): 'kafka' | 'postgres' {
  return profile === 'kafka' || profile === 'distributed' ? 'kafka' : 'postgres';
}

export interface CreateBusOptions {
  config: Pick<BaseConfig, 'profile' | 'kafkaBrokers'>;
  store: EventStore;
  /** Database with the busMigrations tables. */
  pool: pg.Pool;
  codec?: BusCodec;
  logger?: Logger;
  kafka?: Omit<KafkaBusOptions, 'brokers' | 'codec' | 'logger'>;
  postgres?: Omit<PostgresBusOptions, 'store' | 'pool' | 'logger'>;
}

export function createBus(options: CreateBusOptions): EventBus {
  const { config } = options;
  if (busKindFor(config.profile) === 'kafka') {
    if (config.kafkaBrokers.length === 0) throw new Error(`the ${config.profile} profile needs KAFKA_BROKERS`);
    return createKafkaBus({
      ...options.kafka,
      brokers: config.kafkaBrokers,
      codec: options.codec,
      logger: options.logger,
    });
  }
  return createPostgresBus({ ...options.postgres, store: options.store, pool: options.pool, logger: options.logger });
}
