import type { TenantEvent } from '@keel/shared-events';
import { describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/decider.ts';
import { assertTenantWritable, tenantDecider, type TenantState } from '../../src/domain/tenant.ts';
import { deciderSpec } from './spec.ts';

const spec = deciderSpec(tenantDecider);
const created: TenantEvent = { type: 'TenantCreated', data: { name: 'Acme' } };
const suspended: TenantEvent = { type: 'TenantSuspended', data: { reason: 'unpaid' } };
const erased: TenantEvent = { type: 'TenantErased', data: { reason: 'gdpr' } };

describe('tenant decider', () => {
  it('creates a tenant once', () => {
    spec.given([]).when({ type: 'CreateTenant', data: { name: 'Acme' } }).then([created]);
    spec.given([created]).when({ type: 'CreateTenant', data: { name: 'Acme' } }).thenThrows('ALREADY_EXISTS');
  });

  it('suspends an active tenant; suspending again changes nothing', () => {
    spec.given([created]).when({ type: 'SuspendTenant', data: { reason: 'unpaid' } }).then([suspended]);
    spec.given([created, suspended]).when({ type: 'SuspendTenant', data: { reason: 'again' } }).thenNothing();
  });

  it('reinstates only a suspended tenant', () => {
    spec.given([created, suspended]).when({ type: 'ReinstateTenant', data: {} }).then([{ type: 'TenantReinstated', data: {} }]);
    spec.given([created]).when({ type: 'ReinstateTenant', data: {} }).thenNothing();
  });

  it('erases an active or suspended tenant, after which nothing but erase is accepted', () => {
    spec.given([created]).when({ type: 'EraseTenant', data: { reason: 'gdpr' } }).then([erased]);
    spec.given([created, suspended]).when({ type: 'EraseTenant', data: { reason: 'gdpr' } }).then([erased]);
    spec.given([created, erased]).when({ type: 'EraseTenant', data: { reason: 'again' } }).thenNothing();
    spec.given([created, erased]).when({ type: 'ReinstateTenant', data: {} }).thenThrows('TENANT_ERASED');
    spec.given([created, erased]).when({ type: 'SuspendTenant', data: { reason: 'x' } }).thenThrows('TENANT_ERASED');
  });

  it('refuses lifecycle commands on a tenant that does not exist', () => {
    spec.given([]).when({ type: 'SuspendTenant', data: { reason: 'x' } }).thenThrows('NOT_FOUND');
    spec.given([]).when({ type: 'EraseTenant', data: { reason: 'x' } }).thenThrows('NOT_FOUND');
  });

  it('lets commands through only while the tenant is active', () => {
    const codeOf = (s: TenantState) => {
      try {
        assertTenantWritable(s);
        return 'ok';
      } catch (e) {
        return (e as DomainError).code;
      }
    };
    expect(codeOf(spec.given([created]).state())).toBe('ok');
    expect(codeOf(spec.given([created, suspended]).state())).toBe('TENANT_SUSPENDED');
    expect(codeOf(spec.given([created, suspended, { type: 'TenantReinstated', data: {} }]).state())).toBe('ok');
    expect(codeOf(spec.given([created, erased]).state())).toBe('TENANT_ERASED');
    expect(codeOf(spec.given([]).state())).toBe('NOT_FOUND');
  });
});
