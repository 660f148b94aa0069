import { describe, expect, it } from 'vitest';
import type { RecordedEvent } from '@keel/shared-events';
import {
  applyDashboardEvent,
  connectorKey,
  dashboardKeys,
  deliveryKey,
  emptyDashboardState,
  endpointKey,
  evolveFlowRun,
  ingestKey,
  runKey,
  stepConnectorsOf,
} from '../src/dashboard/model.ts';
import { eventFactory } from './fixtures.ts';

const T = 't1';

function fold(events: RecordedEvent[]) {
  const state = emptyDashboardState();
  for (const e of events) applyDashboardEvent(state, e);
  return state;
}

describe('flow runs', () => {
  it('follow a run through retries to completion', () => {
    const ev = eventFactory();
    const events = [
      ev(T, 'run', 'r1', 'FlowRunStarted', {
        runId: 'r1',
        flowId: 'f1',
        flowVersion: 2,
        triggerEventId: 'e0',
        input: {},
      }),
      ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 0, attempt: 1, summary: {} }),
      ev(T, 'run', 'r1', 'StepFailed', { runId: 'r1', stepIndex: 1, attempt: 1, error: 'HTTP 503' }),
      ev(T, 'run', 'r1', 'StepRetryScheduled', {
        runId: 'r1',
        stepIndex: 1,
        attempt: 1,
        retryAt: '2025-03-01T10:01:00Z',
      }),
      ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 1, attempt: 2, summary: {} }),
      ev(T, 'run', 'r1', 'FlowRunCompleted', { runId: 'r1', durationMs: 4000 }),
    ];
    const run = fold(events).runs.rows.get(runKey(T, 'r1'))!;
    expect(run).toMatchObject({
      flowId: 'f1',
      flowVersion: 2,
      status: 'succeeded',
      stepsSucceeded: 2,
      stepsFailed: 1,
      retriesScheduled: 1,
      lastError: 'HTTP 503',
      durationMs: 4000,
      startedPosition: 1,
      updatedPosition: 6,
    });
    // Half-way it was retrying.
    const mid = fold(events.slice(0, 4)).runs.rows.get(runKey(T, 'r1'))!;
    expect(mid.status).toBe('retrying');
  });

  it('records failure, dead letter and the duration measured from the start', () => {
    const ev = eventFactory();
    const s = fold([
      ev(T, 'run', 'r2', 'FlowRunStarted', {
        runId: 'r2',
        flowId: 'f1',
        flowVersion: 1,
        triggerEventId: 'e',
        input: {},
      }),
      ev(T, 'run', 'r2', 'FlowRunDeadLettered', { runId: 'r2', reason: 'max attempts' }),
    ]);
    expect(s.runs.rows.get(runKey(T, 'r2'))).toMatchObject({
      status: 'dead_lettered',
      lastError: 'max attempts',
      durationMs: 1000,
    });
  });

  it('ignores events of other types', () => {
    const ev = eventFactory();
    const start = ev(T, 'run', 'r3', 'FlowRunStarted', {
      runId: 'r3',
      flowId: 'f',
      flowVersion: 1,
      triggerEventId: 'e',
      input: {},
    });
    const run = evolveFlowRun(undefined, start);
    expect(evolveFlowRun(run, ev(T, 'tenant', 'x', 'TenantCreated', { name: 'x' }))).toBe(run);
  });
});

describe('connector health', () => {
  const definition = {
    trigger: { eventType: 'RecordIngested' },
    steps: [{ transform: '$' }, { destination: { connectorId: 'c1' } }],
  };

  it('attributes step outcomes to the connector the flow version calls, and opens the circuit after repeated failures', () => {
    expect(stepConnectorsOf(definition)).toEqual([null, 'c1']);
    const ev = eventFactory();
    const events: RecordedEvent[] = [
      ev(T, 'connector', 'c1', 'ConnectorInstalled', { connectorId: 'c1', kind: 'http', name: 'CRM', config: {} }),
      ev(T, 'flow', 'f1', 'FlowDefined', { flowId: 'f1', name: 'sync', definition }),
      ev(T, 'flow', 'f1', 'FlowVersionPublished', { flowId: 'f1', version: 1, definition }),
      ev(T, 'run', 'r1', 'FlowRunStarted', {
        runId: 'r1',
        flowId: 'f1',
        flowVersion: 1,
        triggerEventId: 'e',
        input: {},
      }),
      ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 0, attempt: 1, summary: {} }),
      ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 1, attempt: 1, summary: { status: 200 } }),
    ];
    for (let i = 0; i < 5; i++)
      events.push(
        ev(T, 'run', 'r1', 'StepFailed', { runId: 'r1', stepIndex: 1, attempt: i + 2, error: `timeout ${i}` }),
      );
    const s = fold(events);
    const c = s.connectors.rows.get(connectorKey(T, 'c1'))!;
    expect(c).toMatchObject({
      name: 'CRM',
      kind: 'http',
      status: 'active',
      successes: 1,
      failures: 5,
      consecutiveFailures: 5,
      circuit: 'open',
      lastError: 'timeout 4',
    });

    // Paused by the runner for an open circuit, resumed: half-open; a success closes it.
    const more = [
      ev(T, 'connector', 'c1', 'ConnectorPaused', { connectorId: 'c1', reason: 'circuit open' }),
      ev(T, 'connector', 'c1', 'ConnectorResumed', { connectorId: 'c1' }),
    ];
    for (const e of more) applyDashboardEvent(s, e);
    expect(s.connectors.rows.get(connectorKey(T, 'c1'))).toMatchObject({ status: 'active', circuit: 'half_open' });
    applyDashboardEvent(s, ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 1, attempt: 7, summary: {} }));
    expect(s.connectors.rows.get(connectorKey(T, 'c1'))).toMatchObject({
      circuit: 'closed',
      consecutiveFailures: 0,
      successes: 2,
    });
  });
});

describe('webhook deliveries', () => {
  it('count pending, succeeded, failed and dead-lettered per endpoint, and redrive back to pending', () => {
    const ev = eventFactory();
    const reg = ev(T, 'webhook', 'w1', 'WebhookEndpointRegistered', {
      webhookId: 'w1',
      url: 'https://x',
      eventTypes: ['RecordIngested'],
      secret: 'enc',
    });
    const r1 = ev(T, 'record', 'a-1', 'RecordIngested', { source: 's', entityType: 'a', externalId: '1', payload: {} });
    const r2 = ev(T, 'record', 'a-2', 'RecordIngested', { source: 's', entityType: 'a', externalId: '2', payload: {} });
    const other = ev(T, 'tenant', 'main', 'TenantSuspended', { reason: 'x' });
    const s = fold([reg, r1, r2, other]);
    expect(s.endpoints.rows.get(endpointKey(T, 'w1'))).toMatchObject({ pending: 2, succeeded: 0 });
    expect(s.deliveries.rows.size).toBe(2);

    const outcomes = [
      ev(T, 'webhook', 'w1', 'WebhookDeliverySucceeded', {
        webhookId: 'w1',
        deliveryId: 'd1',
        eventId: r1.eventId,
        attempt: 1,
        status: 200,
        latencyMs: 12,
      }),
      ev(T, 'webhook', 'w1', 'WebhookDeliveryFailed', {
        webhookId: 'w1',
        deliveryId: 'd2',
        eventId: r2.eventId,
        attempt: 1,
        status: 500,
        error: 'HTTP 500',
        nextAttemptAt: '2025-03-01T11:00:00Z',
      }),
    ];
    for (const e of outcomes) applyDashboardEvent(s, e);
    expect(s.endpoints.rows.get(endpointKey(T, 'w1'))).toMatchObject({
      pending: 0,
      succeeded: 1,
      failed: 1,
      lastError: 'HTTP 500',
    });
    applyDashboardEvent(
      s,
      ev(T, 'webhook', 'w1', 'WebhookDeliveryDeadLettered', {
        webhookId: 'w1',
        deliveryId: 'd2',
        eventId: r2.eventId,
        attempts: 5,
        reason: 'gave up',
      }),
    );
    expect(s.endpoints.rows.get(endpointKey(T, 'w1'))).toMatchObject({ failed: 0, deadLettered: 1 });
    // A redrive names the delivery only.
    applyDashboardEvent(s, ev(T, 'webhook', 'w1', 'WebhookDeliveryRedriven', { webhookId: 'w1', deliveryId: 'd2' }));
    expect(s.endpoints.rows.get(endpointKey(T, 'w1'))).toMatchObject({ pending: 1, deadLettered: 0, succeeded: 1 });
    expect(s.deliveries.rows.get(deliveryKey(T, 'w1', r2.eventId))).toMatchObject({
      status: 'pending',
      attempts: 5,
      deliveryId: 'd2',
    });
  });

  it('owes nothing for events of other tenants, other types, or after removal', () => {
    const ev = eventFactory();
    const s = fold([
      ev(T, 'webhook', 'w1', 'WebhookEndpointRegistered', {
        webhookId: 'w1',
        url: 'https://x',
        eventTypes: ['FlowEnabled'],
        secret: 'e',
      }),
      ev('t2', 'flow', 'f', 'FlowEnabled', { flowId: 'f' }),
      ev(T, 'flow', 'f', 'FlowDisabled', { flowId: 'f' }),
      ev(T, 'webhook', 'w1', 'WebhookEndpointRemoved', { webhookId: 'w1' }),
      ev(T, 'flow', 'f', 'FlowEnabled', { flowId: 'f' }),
    ]);
    expect(s.deliveries.rows.size).toBe(0);
  });
});

describe('ingest rates and redeliveries', () => {
  it('counts events per tenant, hour and type, and a redelivered event changes nothing', () => {
    const ev = eventFactory(new Date('2025-03-01T10:59:58.000Z'));
    const a = ev(T, 'record', 'a-1', 'RecordIngested', { source: 's', entityType: 'a', externalId: '1', payload: {} });
    const b = ev(T, 'record', 'a-2', 'RecordIngested', { source: 's', entityType: 'a', externalId: '2', payload: {} });
    const c = ev(T, 'record', 'a-3', 'RecordIngested', { source: 's', entityType: 'a', externalId: '3', payload: {} });
    const s = fold([a, b, c]);
    expect(s.ingest.rows.get(ingestKey(T, '2025-03-01T10:00:00.000Z', 'RecordIngested'))?.count).toBe(1);
    expect(s.ingest.rows.get(ingestKey(T, '2025-03-01T11:00:00.000Z', 'RecordIngested'))?.count).toBe(2);
    expect(applyDashboardEvent(s, b)).toBe(false);
    expect(s.ingest.rows.get(ingestKey(T, '2025-03-01T11:00:00.000Z', 'RecordIngested'))?.count).toBe(2);
    expect(s.positions.rows.get(T)).toBe(3);
  });

  it('names the keyed rows a batch can touch', () => {
    const ev = eventFactory();
    const keys = dashboardKeys([
      ev(T, 'run', 'r1', 'StepFailed', { runId: 'r1', stepIndex: 0, attempt: 1, error: 'x' }),
      ev(T, 'webhook', 'w', 'WebhookDeliveryRedriven', { webhookId: 'w', deliveryId: 'd' }),
      ev('t2', 'webhook', 'w', 'WebhookDeliverySucceeded', {
        webhookId: 'w',
        deliveryId: 'd',
        eventId: 'e',
        attempt: 1,
        status: 200,
        latencyMs: 1,
      }),
    ]);
    expect(keys.tenants).toEqual([T, 't2']);
    expect(keys.runs).toEqual([[T, 'r1']]);
    expect(keys.deliveriesById).toEqual([[T, 'w', 'd']]);
    expect(keys.deliveries).toEqual([['t2', 'w', 'e']]);
  });
});
