import type { TenantCreated, TenantErased, TenantEvent, TenantReinstated, TenantSuspended } from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/** tenant-<tenantId>-root */
export type TenantState =
  | { status: 'absent' }
  | { status: 'active' | 'suspended' | 'erased'; name: string; suspendedReason?: string };

export type CreateTenant = Command<'CreateTenant', { name: string }>;
export type SuspendTenant = Command<'SuspendTenant', { reason: string }>;
export type ReinstateTenant = Command<'ReinstateTenant', Record<string, never>>;
export type EraseTenant = Command<'EraseTenant', { reason: string }>;
export type TenantCommand = CreateTenant | SuspendTenant | ReinstateTenant | EraseTenant;

const notFound = () => new DomainError('NOT_FOUND', 'tenant not found');
const erased = () => new DomainError('TENANT_ERASED', 'the tenant was erased');

export function decideTenant(command: TenantCommand, state: TenantState): TenantEvent[] {
  if (command.type === 'CreateTenant') {
    if (state.status !== 'absent') throw new DomainError('ALREADY_EXISTS', 'the tenant already exists');
    return [{ type: 'TenantCreated', data: { name: command.data.name } } satisfies TenantCreated];
  }
  if (state.status === 'absent') throw notFound();
  switch (command.type) {
    case 'SuspendTenant':
      if (state.status === 'erased') throw erased();
      if (state.status === 'suspended') return [];
      return [{ type: 'TenantSuspended', data: { reason: command.data.reason } } satisfies TenantSuspended];
    case 'ReinstateTenant':
      if (state.status === 'erased') throw erased();
      if (state.status === 'active') return [];
      return [{ type: 'TenantReinstated', data: {} } satisfies TenantReinstated];
    case 'EraseTenant':
      if (state.status === 'erased') return [];
      return [{ type: 'TenantErased', data: { reason: command.data.reason } } satisfies TenantErased];
  }
}

export function evolveTenant(state: TenantState, event: TenantEvent): TenantState {
  switch (event.type) {
    case 'TenantCreated':
      return { status: 'active', name: event.data.name };
    case 'TenantSuspended':
      return state.status === 'absent' ? state : { ...state, status: 'suspended', suspendedReason: event.data.reason };
    case 'TenantReinstated':
      return state.status === 'absent' ? state : { status: 'active', name: state.name };
    case 'TenantErased':
      return state.status === 'absent' ? state : { status: 'erased', name: state.name };
    default:
      return state;
  }
}

export const tenantDecider: Decider<TenantCommand, TenantEvent, TenantState> = {
  decide: decideTenant,
  evolve: evolveTenant,
  initialState: () => ({ status: 'absent' }),
};

/** Commands on anything a tenant owns are refused unless the tenant is active. */
export function assertTenantWritable(state: TenantState): void {
  if (state.status === 'absent') throw notFound();
  if (state.status === 'erased') throw erased();
  if (state.status === 'suspended') throw new DomainError('TENANT_SUSPENDED', 'the tenant is suspended', { reason: state.suspendedReason });
}
