import type { RecordedEvent } from '@keel/shared-events';
import { streamCategory } from '@keel/shared-events';

/**
 * Replay debugging folds a stream with a pure evolve function per stream category. These are the
 * read side's own evolves (a service never imports another service's deciders): they keep every
 * fact an engineer needs to see what the aggregate looked like, and leave out secrets and
 * personal fields (shown as "[redacted]"), since operators can read this view.
 *
 * Unknown categories fall back to a generic fold: the last known value of every data field.
 */
export type ReplayState = Record<string, unknown>;

export interface StreamEvolver {
  category: string;
  initialState(): ReplayState;
  evolve(state: ReplayState, event: RecordedEvent): ReplayState;
}

/** Fields that hold secrets or personal data; their values never appear in replay output. */
export const REDACTED_FIELDS = new Set(['email', 'secret', 'secretHash', 'credentials', 'password', 'token', 'apiKey']);
export const REDACTED = '[redacted]';

/** A deep copy with secret and personal fields replaced, for the events shown next to the state. */
export function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = REDACTED_FIELDS.has(k) && v !== undefined ? REDACTED : redact(v);
    return out;
  }
  return value;
}

type Data = Record<string, unknown>;
const data = (e: RecordedEvent): Data => e.data as Data;
const at = (e: RecordedEvent): string => e.occurredAt.toISOString();

const tenant: StreamEvolver = {
  category: 'tenant',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    switch (e.type) {
      case 'TenantCreated':
        return { exists: true, name: d.name, status: 'active', createdAt: at(e) };
      case 'TenantSuspended':
        return { ...s, status: 'suspended', suspendedReason: d.reason, suspendedAt: at(e) };
      case 'TenantReinstated': {
        const { suspendedReason: _r, suspendedAt: _a, ...rest } = s;
        return { ...rest, status: 'active' };
      }
      case 'TenantErased':
        return { ...s, status: 'erased', erasedReason: d.reason, erasedAt: at(e) };
      default:
        return generic.evolve(s, e);
    }
  },
};

const access: StreamEvolver = {
  category: 'access',
  initialState: () => ({ users: {}, apiKeys: {}, accessDenied: 0 }),
  evolve(s, e) {
    const d = data(e);
    const users = { ...(s.users as Record<string, { roles: string[] } & Data>) };
    const apiKeys = { ...(s.apiKeys as Record<string, Data>) };
    switch (e.type) {
      case 'UserInvited':
        users[String(d.userId)] = { email: REDACTED, roles: [String(d.role)], invitedAt: at(e) };
        return { ...s, users };
      case 'RoleGranted': {
        const u = users[String(d.userId)] ?? { roles: [] };
        users[String(d.userId)] = { ...u, roles: [...new Set([...u.roles, String(d.role)])] };
        return { ...s, users };
      }
      case 'RoleRevoked': {
        const u = users[String(d.userId)] ?? { roles: [] };
        users[String(d.userId)] = { ...u, roles: u.roles.filter((r) => r !== d.role) };
        return { ...s, users };
      }
      case 'ApiKeyIssued':
        apiKeys[String(d.keyId)] = { name: d.name, role: d.role, revoked: false, issuedAt: at(e) };
        return { ...s, apiKeys };
      case 'ApiKeyRevoked':
        apiKeys[String(d.keyId)] = { ...(apiKeys[String(d.keyId)] ?? {}), revoked: true, revokedAt: at(e) };
        return { ...s, apiKeys };
      case 'AccessDenied':
        return { ...s, accessDenied: Number(s.accessDenied ?? 0) + 1, lastDenied: redact({ ...d, at: at(e) }) };
      default:
        return generic.evolve(s, e);
    }
  },
};

const connector: StreamEvolver = {
  category: 'connector',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    switch (e.type) {
      case 'ConnectorInstalled':
        return {
          exists: true,
          connectorId: d.connectorId,
          kind: d.kind,
          name: d.name,
          config: redact(d.config),
          hasCredentials: typeof d.credentials === 'string',
          credentialsRotations: 0,
          status: 'active',
        };
      case 'ConnectorCredentialsRotated':
        return { ...s, hasCredentials: true, credentialsRotations: Number(s.credentialsRotations ?? 0) + 1 };
      case 'ConnectorPaused':
        return { ...s, status: 'paused', ...(d.reason !== undefined ? { pausedReason: d.reason } : {}) };
      case 'ConnectorResumed': {
        const { pausedReason: _p, ...rest } = s;
        return { ...rest, status: 'active' };
      }
      case 'ConnectorRemoved':
        return { ...s, status: 'removed' };
      default:
        return generic.evolve(s, e);
    }
  },
};

const flow: StreamEvolver = {
  category: 'flow',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    switch (e.type) {
      case 'FlowDefined':
        return {
          exists: true,
          flowId: d.flowId,
          name: d.name,
          enabled: false,
          definition: redact(d.definition),
          versions: [],
        };
      case 'FlowVersionPublished':
        return {
          ...s,
          publishedVersion: d.version,
          definition: redact(d.definition),
          versions: [...((s.versions as unknown[]) ?? []), d.version],
        };
      case 'FlowEnabled':
        return { ...s, enabled: true };
      case 'FlowDisabled':
        return { ...s, enabled: false };
      default:
        return generic.evolve(s, e);
    }
  },
};

interface StepState {
  index: number;
  status: 'succeeded' | 'failed' | 'retry_scheduled';
  attempts: number;
  lastError?: string;
  retryAt?: string;
  summary?: unknown;
}

const run: StreamEvolver = {
  category: 'run',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    const steps = [...((s.steps as StepState[]) ?? [])];
    const setStep = (index: number, patch: Partial<StepState>): StepState[] => {
      const i = steps.findIndex((st) => st.index === index);
      const prev: StepState = i >= 0 ? steps[i]! : { index, status: 'failed', attempts: 0 };
      const next = { ...prev, ...patch };
      if (i >= 0) steps[i] = next;
      else steps.push(next);
      return steps.sort((a, b) => a.index - b.index);
    };
    switch (e.type) {
      case 'FlowRunStarted':
        return {
          exists: true,
          runId: d.runId,
          flowId: d.flowId,
          flowVersion: d.flowVersion,
          triggerEventId: d.triggerEventId,
          input: redact(d.input),
          status: 'running',
          startedAt: at(e),
          steps: [],
        };
      case 'StepSucceeded': {
        const next = setStep(Number(d.stepIndex), {
          status: 'succeeded',
          attempts: Number(d.attempt),
          summary: redact(d.summary),
        });
        const cur = next.find((st) => st.index === Number(d.stepIndex))!;
        delete cur.lastError;
        delete cur.retryAt;
        return { ...s, status: 'running', steps: next };
      }
      case 'StepFailed':
        return {
          ...s,
          steps: setStep(Number(d.stepIndex), {
            status: 'failed',
            attempts: Number(d.attempt),
            lastError: String(d.error),
          }),
        };
      case 'StepRetryScheduled':
        return {
          ...s,
          status: 'retrying',
          steps: setStep(Number(d.stepIndex), {
            status: 'retry_scheduled',
            attempts: Number(d.attempt),
            retryAt: String(d.retryAt),
          }),
        };
      case 'FlowRunCompleted':
        return { ...s, status: 'succeeded', durationMs: d.durationMs, finishedAt: at(e) };
      case 'FlowRunFailed':
        return { ...s, status: 'failed', error: d.error, finishedAt: at(e) };
      case 'FlowRunDeadLettered':
        return { ...s, status: 'dead_lettered', deadLetterReason: d.reason, finishedAt: at(e) };
      default:
        return generic.evolve(s, e);
    }
  },
};

const webhook: StreamEvolver = {
  category: 'webhook',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    const deliveries = { ...((s.deliveries as Record<string, Data>) ?? {}) };
    const delivery = (patch: Data) => {
      const id = String(d.deliveryId);
      deliveries[id] = { ...(deliveries[id] ?? {}), ...patch };
      return { ...s, deliveries };
    };
    switch (e.type) {
      case 'WebhookEndpointRegistered':
        return {
          exists: true,
          webhookId: d.webhookId,
          url: d.url,
          eventTypes: d.eventTypes,
          secret: REDACTED,
          status: 'active',
          deliveries: {},
        };
      case 'WebhookEndpointUpdated':
        return {
          ...s,
          ...(d.url !== undefined ? { url: d.url } : {}),
          ...(d.eventTypes !== undefined ? { eventTypes: d.eventTypes } : {}),
        };
      case 'WebhookEndpointRemoved':
        return { ...s, status: 'removed' };
      case 'WebhookDeliverySucceeded':
        return delivery({
          eventId: d.eventId,
          status: 'succeeded',
          attempts: d.attempt,
          httpStatus: d.status,
          latencyMs: d.latencyMs,
        });
      case 'WebhookDeliveryFailed':
        return delivery({
          eventId: d.eventId,
          status: 'failed',
          attempts: d.attempt,
          ...(d.status !== undefined ? { httpStatus: d.status } : {}),
          lastError: d.error,
          ...(d.nextAttemptAt !== undefined ? { nextAttemptAt: d.nextAttemptAt } : {}),
        });
      case 'WebhookDeliveryDeadLettered':
        return delivery({ eventId: d.eventId, status: 'dead_lettered', attempts: d.attempts, reason: d.reason });
      case 'WebhookDeliveryRedriven':
        return delivery({ status: 'redriven' });
      default:
        return generic.evolve(s, e);
    }
  },
};

const source: StreamEvolver = {
  category: 'source',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    switch (e.type) {
      case 'InboundSourceRegistered':
        return { exists: true, sourceId: d.sourceId, name: d.name, secret: REDACTED, status: 'active' };
      case 'InboundSourceRemoved':
        return { ...s, status: 'removed' };
      default:
        return generic.evolve(s, e);
    }
  },
};

const record: StreamEvolver = {
  category: 'record',
  initialState: () => ({ exists: false }),
  evolve(s, e) {
    const d = data(e);
    if (e.type !== 'RecordIngested') return generic.evolve(s, e);
    return {
      exists: true,
      source: d.source,
      entityType: d.entityType,
      externalId: d.externalId,
      payload: redact(d.payload),
      receivedVia: d.receivedVia,
      contentHash: d.contentHash,
      versions: Number(s.versions ?? 0) + 1,
      firstIngestedAt: s.firstIngestedAt ?? at(e),
      lastIngestedAt: at(e),
    };
  },
};

/** The structural fallback: event count, last type, and the last known value of each data field. */
export const generic: StreamEvolver = {
  category: '*',
  initialState: () => ({ eventCount: 0, fields: {} }),
  evolve(s, e) {
    return {
      ...s,
      eventCount: Number(s.eventCount ?? 0) + 1,
      lastType: e.type,
      fields: { ...((s.fields as Data) ?? {}), ...(redact(e.data) as Data) },
    };
  },
};

const evolvers = new Map(
  [tenant, access, connector, flow, run, webhook, source, record].map((ev) => [ev.category, ev]),
);

export function evolverFor(streamId: string): StreamEvolver {
  return evolvers.get(streamCategory(streamId)) ?? generic;
}
