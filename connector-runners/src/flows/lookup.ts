import type pg from 'pg';
import type { ConnectorRecord } from './steps.ts';

/**
 * Reads of the runner-owned flow state: connectors (credentials still encrypted) and flow
 * versions (immutable once published, so cached for good).
 */
export interface FlowLookup {
  definition(tenantId: string, flowId: string, version: number): Promise<unknown>;
  currentVersion(tenantId: string, flowId: string): Promise<number | undefined>;
  connector(tenantId: string, connectorId: string): Promise<ConnectorRecord | undefined>;
}

export function createFlowLookup(pool: pg.Pool): FlowLookup {
  const definitions = new Map<string, unknown>();
  return {
    async definition(tenantId, flowId, version) {
      const key = `${tenantId}\u0000${flowId}\u0000${version}`;
      if (definitions.has(key)) return definitions.get(key);
      const { rows } = await pool.query<{ definition: unknown }>(
        `select definition from keel_runner_flow_versions where tenant_id = $1 and flow_id = $2 and version = $3`,
        [tenantId, flowId, version],
      );
      if (!rows[0]) return undefined;
      if (definitions.size > 5_000) definitions.clear();
      definitions.set(key, rows[0].definition);
      return rows[0].definition;
    },
    async currentVersion(tenantId, flowId) {
      const { rows } = await pool.query<{ current_version: number }>(
        `select current_version from keel_runner_flows where tenant_id = $1 and flow_id = $2`,
        [tenantId, flowId],
      );
      return rows[0]?.current_version;
    },
    async connector(tenantId, connectorId) {
      const { rows } = await pool.query<{
        connector_id: string;
        kind: string;
        config: unknown;
        credentials: string | null;
        status: ConnectorRecord['status'];
      }>(
        `select connector_id, kind, config, credentials, status from keel_runner_connectors where tenant_id = $1 and connector_id = $2`,
        [tenantId, connectorId],
      );
      const r = rows[0];
      if (!r) return undefined;
      const rec: ConnectorRecord = { connectorId: r.connector_id, kind: r.kind, config: r.config, status: r.status };
      if (r.credentials) rec.credentials = r.credentials;
      return rec;
    },
  };
}
