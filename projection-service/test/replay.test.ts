import { describe, expect, it } from 'vitest';
import { diff } from '../src/replay/diff.ts';
import { REDACTED } from '../src/replay/evolve.ts';
import { foldStream, parseReplayPoint, streamHistory } from '../src/replay/fold.ts';
import { eventFactory } from './fixtures.ts';

describe('structural diff', () => {
  it('lists added, removed and changed paths', () => {
    expect(diff({ a: 1, b: { c: [1, 2] }, gone: true }, { a: 2, b: { c: [1, 3, 4] }, 'new key': 'x' })).toEqual([
      { path: 'a', op: 'changed', before: 1, after: 2 },
      { path: 'b.c[1]', op: 'changed', before: 2, after: 3 },
      { path: 'b.c[2]', op: 'added', after: 4 },
      { path: 'gone', op: 'removed', before: true },
      { path: '["new key"]', op: 'added', after: 'x' },
    ]);
    expect(diff({ a: [1] }, { a: [1] })).toEqual([]);
    expect(diff(1, 'x')).toEqual([{ path: '$', op: 'changed', before: 1, after: 'x' }]);
  });
});

describe('replay folds', () => {
  const T = 't1';
  it('fold a tenant stream up to any point', () => {
    const ev = eventFactory();
    const events = [
      ev(T, 'tenant', 'main', 'TenantCreated', { name: 'Acme' }),
      ev(T, 'tenant', 'main', 'TenantSuspended', { reason: 'unpaid' }),
      ev(T, 'tenant', 'main', 'TenantReinstated', {}),
    ];
    expect(foldStream(events[0]!.streamId, events.slice(0, 2))).toMatchObject({
      name: 'Acme',
      status: 'suspended',
      suspendedReason: 'unpaid',
    });
    const end = foldStream(events[0]!.streamId, events);
    expect(end).toMatchObject({ status: 'active' });
    expect(end).not.toHaveProperty('suspendedReason');
  });

  it('show each step of a run with what changed, and never secrets or personal fields', () => {
    const ev = eventFactory();
    const run = [
      ev(T, 'run', 'r1', 'FlowRunStarted', {
        runId: 'r1',
        flowId: 'f1',
        flowVersion: 1,
        triggerEventId: 'e',
        input: { email: 'a@b.c', n: 1 },
      }),
      ev(T, 'run', 'r1', 'StepFailed', { runId: 'r1', stepIndex: 0, attempt: 1, error: 'HTTP 500' }),
      ev(T, 'run', 'r1', 'StepSucceeded', { runId: 'r1', stepIndex: 0, attempt: 2, summary: { status: 200 } }),
      ev(T, 'run', 'r1', 'FlowRunCompleted', { runId: 'r1', durationMs: 10 }),
    ];
    const steps = streamHistory(run[0]!.streamId, run);
    expect(steps).toHaveLength(4);
    expect(steps[0]!.state).toMatchObject({ status: 'running', input: { email: REDACTED, n: 1 } });
    expect(steps[0]!.event.data).toMatchObject({ input: { email: REDACTED } });
    expect(steps[1]!.changes).toEqual([
      { path: 'steps[0]', op: 'added', after: { index: 0, status: 'failed', attempts: 1, lastError: 'HTTP 500' } },
    ]);
    expect(steps[2]!.changes).toEqual(
      expect.arrayContaining([
        { path: 'steps[0].status', op: 'changed', before: 'failed', after: 'succeeded' },
        { path: 'steps[0].lastError', op: 'removed', before: 'HTTP 500' },
      ]),
    );
    expect(steps[3]!.state).toMatchObject({ status: 'succeeded', durationMs: 10 });
    expect(JSON.stringify(steps)).not.toContain('a@b.c');
  });

  it('redact access secrets and fall back to a generic fold for unknown categories', () => {
    const ev = eventFactory();
    const access = [
      ev(T, 'access', 'main', 'UserInvited', { userId: 'u1', email: 'x@y.z', role: 'viewer' }),
      ev(T, 'access', 'main', 'ApiKeyIssued', { keyId: 'k1', name: 'ci', role: 'admin', secretHash: 'scrypt$...' }),
      ev(T, 'access', 'main', 'RoleGranted', { userId: 'u1', role: 'auditor' }),
      ev(T, 'access', 'main', 'ApiKeyRevoked', { keyId: 'k1' }),
    ];
    const s = foldStream(access[0]!.streamId, access);
    expect(s).toMatchObject({
      users: { u1: { roles: ['viewer', 'auditor'] } },
      apiKeys: { k1: { revoked: true, role: 'admin' } },
    });
    expect(JSON.stringify(s)).not.toMatch(/x@y\.z|scrypt/);
    const custom = [
      ev(T, 'invoice', 'i1', 'InvoiceRaised', { amount: 5, token: 't' }),
      ev(T, 'invoice', 'i1', 'InvoicePaid', { paid: true }),
    ];
    expect(foldStream(custom[0]!.streamId, custom)).toEqual({
      eventCount: 2,
      lastType: 'InvoicePaid',
      fields: { amount: 5, token: REDACTED, paid: true },
    });
  });

  it('parses at as a revision or an instant', () => {
    expect(parseReplayPoint('3')).toEqual({ revision: 3 });
    expect(parseReplayPoint('2025-03-01T10:00:00Z')).toEqual({ time: new Date('2025-03-01T10:00:00Z') });
    expect(parseReplayPoint(undefined)).toBeUndefined();
    for (const bad of ['-1', 'yesterday', '3.5', "1' or '1'='1", '2025-99-99'])
      expect(parseReplayPoint(bad)).toBe('invalid');
  });
});
