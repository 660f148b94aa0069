import { fileURLToPath } from 'node:url';
import type { MigrationSet } from '@keel/shared-events';

/**
 * The read models' tables (created by projection-service/migrations). Each projection owns a set
 * of tables that a rebuild replaces together: it fills shadow copies (`<table>__rebuild`) from
 * position 0, then swaps them in. `audit_checkpoints` is not in any set on purpose: signed
 * checkpoints are attestations made at the time, and a rebuilt chain must still match them.
 */
export const READER_ROLE = 'keel_reader';
export const SHADOW_SUFFIX = '__rebuild';

export type ProjectionName = 'audit' | 'dashboard';
export const projectionNames: readonly ProjectionName[] = ['audit', 'dashboard'];

export const projectionTables: Record<ProjectionName, readonly string[]> = {
  audit: ['audit_events', 'audit_chain_heads'],
  dashboard: [
    'dash_flow_runs',
    'dash_connectors',
    'dash_flow_versions',
    'dash_webhook_endpoints',
    'dash_webhook_deliveries',
    'dash_ingest_rates',
    'dash_positions',
  ],
};

/** The bus consumer group (and projector position name) of each projection. */
export const projectorGroup: Record<ProjectionName, string> = {
  audit: 'projector-audit',
  dashboard: 'projector-dashboard',
};

/** Table name → actual table (live, or a shadow with a suffix). */
export type TableNames = Record<string, string>;

export function tableNames(projection: ProjectionName, suffix = ''): TableNames {
  return Object.fromEntries(projectionTables[projection].map((t) => [t, t + suffix]));
}

export function isProjectionName(name: string): name is ProjectionName {
  return (projectionNames as readonly string[]).includes(name);
}

export const projectionServiceMigrations: MigrationSet[] = [
  {
    directory: fileURLToPath(new URL('../../migrations/', import.meta.url)),
    tableName: 'keel_migrations_projection',
  },
];
