import type pg from 'pg';
import type { RecordedEvent } from '@keel/shared-events';

/**
 * Runner-side state built from the bus: each consumer group keeps the tables it needs, in the
 * same transaction as the work it derives from the same batch. Every row remembers the global
 * position of the last event applied to it, so a redelivered (older) event changes nothing.
 */
type Q = Pick<pg.PoolClient, 'query'>;
type Data = Record<string, unknown>;
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export const TENANT_EVENTS = ['TenantCreated', 'TenantSuspended', 'TenantReinstated', 'TenantErased'] as const;
export const ENDPOINT_EVENTS = [
  'WebhookEndpointRegistered',
  'WebhookEndpointUpdated',
  'WebhookEndpointRemoved',
] as const;
export const CONNECTOR_EVENTS = [
  'ConnectorInstalled',
  'ConnectorCredentialsRotated',
  'ConnectorPaused',
  'ConnectorResumed',
  'ConnectorRemoved',
] as const;
export const FLOW_EVENTS = ['FlowDefined', 'FlowVersionPublished', 'FlowEnabled', 'FlowDisabled'] as const;

export async function applyTenantEvent(q: Q, e: RecordedEvent): Promise<boolean> {
  const status =
    e.type === 'TenantSuspended'
      ? 'suspended'
      : e.type === 'TenantErased'
        ? 'erased'
        : e.type === 'TenantCreated' || e.type === 'TenantReinstated'
          ? 'active'
          : undefined;
  if (!status) return false;
  // An erased tenant stays erased whatever arrives after.
  await q.query(
    `insert into keel_runner_tenants (tenant_id, status, position) values ($1, $2, $3)
     on conflict (tenant_id) do update set status = case when keel_runner_tenants.status = 'erased' then 'erased' else excluded.status end,
       position = excluded.position, updated_at = now()
     where keel_runner_tenants.position < excluded.position`,
    [e.tenantId, status, e.globalPosition],
  );
  if (status === 'erased') {
    await q.query(
      `update keel_runner_webhook_endpoints set status = 'removed', updated_at = now() where tenant_id = $1`,
      [e.tenantId],
    );
    await q.query(
      `update keel_runner_connectors set status = 'removed', credentials = null, updated_at = now() where tenant_id = $1`,
      [e.tenantId],
    );
    await q.query(`update keel_runner_flows set enabled = false, updated_at = now() where tenant_id = $1`, [
      e.tenantId,
    ]);
  }
  return true;
}

export async function applyEndpointEvent(q: Q, e: RecordedEvent): Promise<boolean> {
  const d = e.data as Data;
  const webhookId = str(d.webhookId);
  if (!webhookId) return false;
  switch (e.type) {
    case 'WebhookEndpointRegistered':
      await q.query(
        `insert into keel_runner_webhook_endpoints (tenant_id, webhook_id, url, event_types, secret, status, position)
         values ($1, $2, $3, $4, $5, 'active', $6)
         on conflict (tenant_id, webhook_id) do update set url = excluded.url, event_types = excluded.event_types,
           secret = excluded.secret, status = 'active', position = excluded.position, updated_at = now()
         where keel_runner_webhook_endpoints.position < excluded.position`,
        [
          e.tenantId,
          webhookId,
          str(d.url) ?? '',
          Array.isArray(d.eventTypes) ? d.eventTypes.map(String) : [],
          str(d.secret) ?? '',
          e.globalPosition,
        ],
      );
      return true;
    case 'WebhookEndpointUpdated':
      await q.query(
        `update keel_runner_webhook_endpoints set url = coalesce($3, url), event_types = coalesce($4, event_types), position = $5, updated_at = now()
          where tenant_id = $1 and webhook_id = $2 and position < $5`,
        [
          e.tenantId,
          webhookId,
          str(d.url) ?? null,
          Array.isArray(d.eventTypes) ? d.eventTypes.map(String) : null,
          e.globalPosition,
        ],
      );
      return true;
    case 'WebhookEndpointRemoved':
      await q.query(
        `update keel_runner_webhook_endpoints set status = 'removed', position = $3, updated_at = now() where tenant_id = $1 and webhook_id = $2 and position < $3`,
        [e.tenantId, webhookId, e.globalPosition],
      );
      return true;
    default:
      return false;
  }
}

export async function applyConnectorEvent(q: Q, e: RecordedEvent): Promise<boolean> {
  const d = e.data as Data;
  const connectorId = str(d.connectorId);
  if (!connectorId) return false;
  const set = async (sql: string, params: unknown[]) =>
    q.query(
      `update keel_runner_connectors set ${sql}, position = $3, updated_at = now() where tenant_id = $1 and connector_id = $2 and position < $3`,
      [e.tenantId, connectorId, e.globalPosition, ...params],
    );
  switch (e.type) {
    case 'ConnectorInstalled':
      await q.query(
        `insert into keel_runner_connectors (tenant_id, connector_id, kind, name, config, credentials, status, position)
         values ($1, $2, $3, $4, $5, $6, 'active', $7)
         on conflict (tenant_id, connector_id) do update set kind = excluded.kind, name = excluded.name, config = excluded.config,
           credentials = excluded.credentials, status = 'active', position = excluded.position, updated_at = now()
         where keel_runner_connectors.position < excluded.position`,
        [
          e.tenantId,
          connectorId,
          str(d.kind) ?? 'http',
          str(d.name) ?? connectorId,
          JSON.stringify(d.config ?? {}),
          str(d.credentials) ?? null,
          e.globalPosition,
        ],
      );
      return true;
    case 'ConnectorCredentialsRotated':
      await set('credentials = $4', [str(d.credentials) ?? null]);
      return true;
    case 'ConnectorPaused':
      await set(`status = case when status = 'removed' then status else 'paused' end`, []);
      return true;
    case 'ConnectorResumed':
      await set(`status = case when status = 'removed' then status else 'active' end`, []);
      // Runs held by the pause go at once rather than at their next look.
      await q.query(
        `update keel_runner_flow_runs set due_at = now() where tenant_id = $1 and state = 'pending' and last_error = $2`,
        [e.tenantId, `connector ${connectorId} is paused`],
      );
      return true;
    case 'ConnectorRemoved':
      await set(`status = 'removed', credentials = null`, []);
      return true;
    default:
      return false;
  }
}

function triggerTypeOf(definition: unknown): string | null {
  const t = (definition as { trigger?: { eventType?: unknown } } | null)?.trigger?.eventType;
  return typeof t === 'string' ? t : null;
}

export async function applyFlowEvent(q: Q, e: RecordedEvent): Promise<boolean> {
  const d = e.data as Data;
  const flowId = str(d.flowId);
  if (!flowId) return false;
  switch (e.type) {
    case 'FlowDefined':
    case 'FlowVersionPublished': {
      const version = e.type === 'FlowDefined' ? 1 : typeof d.version === 'number' ? d.version : undefined;
      if (version === undefined) return false;
      await q.query(
        `insert into keel_runner_flow_versions (tenant_id, flow_id, version, definition) values ($1, $2, $3, $4)
         on conflict (tenant_id, flow_id, version) do nothing`,
        [e.tenantId, flowId, version, JSON.stringify(d.definition ?? null)],
      );
      await q.query(
        `insert into keel_runner_flows (tenant_id, flow_id, name, enabled, current_version, trigger_event_type, position)
         values ($1, $2, $3, false, $4, $5, $6)
         on conflict (tenant_id, flow_id) do update set
           name = case when $7 then excluded.name else keel_runner_flows.name end,
           current_version = greatest(keel_runner_flows.current_version, excluded.current_version),
           trigger_event_type = case when excluded.current_version >= keel_runner_flows.current_version then excluded.trigger_event_type else keel_runner_flows.trigger_event_type end,
           position = excluded.position, updated_at = now()
         where keel_runner_flows.position < excluded.position`,
        [
          e.tenantId,
          flowId,
          str(d.name) ?? flowId,
          version,
          triggerTypeOf(d.definition),
          e.globalPosition,
          e.type === 'FlowDefined',
        ],
      );
      return true;
    }
    case 'FlowEnabled':
    case 'FlowDisabled':
      await q.query(
        `update keel_runner_flows set enabled = $3, position = $4, updated_at = now() where tenant_id = $1 and flow_id = $2 and position < $4`,
        [e.tenantId, flowId, e.type === 'FlowEnabled', e.globalPosition],
      );
      return true;
    default:
      return false;
  }
}
