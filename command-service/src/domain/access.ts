import { canAssignRole, type AccessEvent, type ApiKeyIssued, type ApiKeyRevoked, type Role, type RoleGranted, type RoleRevoked, type UserInvited } from '@keel/shared-events';
import { DomainError, type Command, type Decider } from './decider.ts';

/**
 * access-<tenantId>-root: the tenant's users, their roles and its API keys. (AccessDenied
 * events live in access-<tenantId>-denials so that audit noise never conflicts with commands.)
 */
export interface AccessState {
  keys: Record<string, { role: Role; name: string; revoked: boolean }>;
  users: Record<string, { roles: Role[] }>;
}

/** Who is asking: nobody hands out or takes away a role above their own. */
export type CallerRole = Role | 'platformAdmin';

export type IssueApiKey = Command<'IssueApiKey', { keyId: string; name: string; role: Role; secretHash: string; callerRole: CallerRole }>;
export type RevokeApiKey = Command<'RevokeApiKey', { keyId: string; callerRole: CallerRole }>;
/** `email` arrives encrypted with the user's own data key (a personal field). */
export type InviteUser = Command<'InviteUser', { userId: string; email: string; role: Role; callerRole: CallerRole }>;
export type GrantRole = Command<'GrantRole', { userId: string; role: Role; callerRole: CallerRole }>;
export type RevokeRole = Command<'RevokeRole', { userId: string; role: Role; callerRole: CallerRole }>;
export type AccessCommand = IssueApiKey | RevokeApiKey | InviteUser | GrantRole | RevokeRole;

/** Owner credentials still usable after removing `except`. */
function ownersLeft(state: AccessState, except: { keyId?: string; userId?: string }): number {
  const keys = Object.entries(state.keys).filter(([id, k]) => k.role === 'owner' && !k.revoked && id !== except.keyId).length;
  const users = Object.entries(state.users).filter(([id, u]) => u.roles.includes('owner') && id !== except.userId).length;
  return keys + users;
}

function assertMayAssign(caller: CallerRole, role: Role): void {
  if (!canAssignRole(caller, role))
    throw new DomainError('ROLE_TOO_HIGH', `a${caller === 'admin' ? 'n' : ''} ${caller} cannot hand out or take away the ${role} role`, {
      callerRole: caller,
      role,
    });
}

const lastOwner = () =>
  new DomainError('LAST_OWNER', 'this is the tenant\'s last owner credential; issue another owner key or grant owner first');

export function decideAccess(command: AccessCommand, state: AccessState): AccessEvent[] {
  switch (command.type) {
    case 'IssueApiKey': {
      const { keyId, name, role, secretHash } = command.data;
      assertMayAssign(command.data.callerRole, role);
      if (state.keys[keyId]) throw new DomainError('ALREADY_EXISTS', 'an API key with this id exists');
      return [{ type: 'ApiKeyIssued', data: { keyId, name, role, secretHash } } satisfies ApiKeyIssued];
    }
    case 'RevokeApiKey': {
      const key = state.keys[command.data.keyId];
      if (!key) throw new DomainError('NOT_FOUND', 'API key not found');
      assertMayAssign(command.data.callerRole, key.role);
      if (key.revoked) return [];
      if (key.role === 'owner' && ownersLeft(state, { keyId: command.data.keyId }) === 0) throw lastOwner();
      return [{ type: 'ApiKeyRevoked', data: { keyId: command.data.keyId } } satisfies ApiKeyRevoked];
    }
    case 'InviteUser': {
      const { userId, email, role } = command.data;
      assertMayAssign(command.data.callerRole, role);
      if (state.users[userId]) throw new DomainError('ALREADY_EXISTS', 'this user was already invited');
      return [{ type: 'UserInvited', data: { userId, email, role } } satisfies UserInvited];
    }
    case 'GrantRole': {
      const user = state.users[command.data.userId];
      if (!user) throw new DomainError('NOT_FOUND', 'user not found');
      assertMayAssign(command.data.callerRole, command.data.role);
      if (user.roles.includes(command.data.role)) return [];
      return [{ type: 'RoleGranted', data: { userId: command.data.userId, role: command.data.role } } satisfies RoleGranted];
    }
    case 'RevokeRole': {
      const user = state.users[command.data.userId];
      if (!user) throw new DomainError('NOT_FOUND', 'user not found');
      assertMayAssign(command.data.callerRole, command.data.role);
      if (!user.roles.includes(command.data.role)) return [];
      if (command.data.role === 'owner' && ownersLeft(state, { userId: command.data.userId }) === 0) throw lastOwner();
      return [{ type: 'RoleRevoked', data: { userId: command.data.userId, role: command.data.role } } satisfies RoleRevoked];
    }
  }
}

export function evolveAccess(state: AccessState, event: AccessEvent): AccessState {
  switch (event.type) {
    case 'ApiKeyIssued': {
      const { keyId, name, role } = event.data;
      return { ...state, keys: { ...state.keys, [keyId]: { name, role, revoked: false } } };
    }
    case 'ApiKeyRevoked': {
      const key = state.keys[event.data.keyId];
      return key ? { ...state, keys: { ...state.keys, [event.data.keyId]: { ...key, revoked: true } } } : state;
    }
    case 'UserInvited':
      return { ...state, users: { ...state.users, [event.data.userId]: { roles: [event.data.role] } } };
    case 'RoleGranted': {
      const user = state.users[event.data.userId] ?? { roles: [] };
      if (user.roles.includes(event.data.role)) return state;
      return { ...state, users: { ...state.users, [event.data.userId]: { roles: [...user.roles, event.data.role] } } };
    }
    case 'RoleRevoked': {
      const user = state.users[event.data.userId];
      if (!user) return state;
      return { ...state, users: { ...state.users, [event.data.userId]: { roles: user.roles.filter((r) => r !== event.data.role) } } };
    }
    default:
      return state;
  }
}

export const accessDecider: Decider<AccessCommand, AccessEvent, AccessState> = {
  decide: decideAccess,
  evolve: evolveAccess,
  initialState: () => ({ keys: {}, users: {} }),
};
