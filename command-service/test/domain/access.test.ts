import type { AccessEvent } from '@keel/shared-events';
import { describe, it } from 'vitest';
import { accessDecider } from '../../src/domain/access.ts';
import { deciderSpec } from './spec.ts';

const spec = deciderSpec(accessDecider);
const ownerKey: AccessEvent = { type: 'ApiKeyIssued', data: { keyId: 'k1', name: 'bootstrap', role: 'owner', secretHash: 'h1' } };
const adminKey: AccessEvent = { type: 'ApiKeyIssued', data: { keyId: 'k2', name: 'ci', role: 'admin', secretHash: 'h2' } };
const invited: AccessEvent = { type: 'UserInvited', data: { userId: 'u1', email: 'kenc1::x', role: 'viewer' } };

describe('access decider', () => {
  it('issues a key once per id', () => {
    spec.given([]).when({ type: 'IssueApiKey', data: { keyId: 'k1', name: 'bootstrap', role: 'owner', secretHash: 'h1', callerRole: 'owner' } }).then([ownerKey]);
    spec.given([ownerKey]).when({ type: 'IssueApiKey', data: { keyId: 'k1', name: 'x', role: 'viewer', secretHash: 'h', callerRole: 'owner' } }).thenThrows('ALREADY_EXISTS');
  });

  it('revokes a key; revoking it again changes nothing; an unknown key is not found', () => {
    spec.given([ownerKey, adminKey]).when({ type: 'RevokeApiKey', data: { keyId: 'k2', callerRole: 'owner' } }).then([{ type: 'ApiKeyRevoked', data: { keyId: 'k2' } }]);
    spec.given([ownerKey, adminKey, { type: 'ApiKeyRevoked', data: { keyId: 'k2' } }]).when({ type: 'RevokeApiKey', data: { keyId: 'k2', callerRole: 'owner' } }).thenNothing();
    spec.given([ownerKey]).when({ type: 'RevokeApiKey', data: { keyId: 'nope', callerRole: 'owner' } }).thenThrows('NOT_FOUND');
  });

  it('never revokes the last owner credential', () => {
    spec.given([ownerKey, adminKey]).when({ type: 'RevokeApiKey', data: { keyId: 'k1', callerRole: 'owner' } }).thenThrows('LAST_OWNER');
    const secondOwner: AccessEvent = { type: 'ApiKeyIssued', data: { keyId: 'k3', name: 'new', role: 'owner', secretHash: 'h3' } };
    spec.given([ownerKey, secondOwner]).when({ type: 'RevokeApiKey', data: { keyId: 'k1', callerRole: 'owner' } }).then([{ type: 'ApiKeyRevoked', data: { keyId: 'k1' } }]);
    const ownerUser: AccessEvent = { type: 'RoleGranted', data: { userId: 'u1', role: 'owner' } };
    spec.given([ownerKey, invited, ownerUser]).when({ type: 'RevokeApiKey', data: { keyId: 'k1', callerRole: 'owner' } }).then([{ type: 'ApiKeyRevoked', data: { keyId: 'k1' } }]);
    spec.given([invited, ownerUser]).when({ type: 'RevokeRole', data: { userId: 'u1', role: 'owner', callerRole: 'owner' } }).thenThrows('LAST_OWNER');
  });

  it('never lets a caller hand out or take away a role above its own', () => {
    spec.given([]).when({ type: 'IssueApiKey', data: { keyId: 'k9', name: 'x', role: 'owner', secretHash: 'h', callerRole: 'admin' } }).thenThrows('ROLE_TOO_HIGH');
    spec.given([]).when({ type: 'IssueApiKey', data: { keyId: 'k9', name: 'x', role: 'admin', secretHash: 'h', callerRole: 'admin' } }).then([
      { type: 'ApiKeyIssued', data: { keyId: 'k9', name: 'x', role: 'admin', secretHash: 'h' } },
    ]);
    spec.given([ownerKey, adminKey]).when({ type: 'RevokeApiKey', data: { keyId: 'k1', callerRole: 'admin' } }).thenThrows('ROLE_TOO_HIGH');
    spec.given([]).when({ type: 'IssueApiKey', data: { keyId: 'k9', name: 'x', role: 'owner', secretHash: 'h', callerRole: 'platformAdmin' } }).then([
      { type: 'ApiKeyIssued', data: { keyId: 'k9', name: 'x', role: 'owner', secretHash: 'h' } },
    ]);
    spec.given([invited]).when({ type: 'GrantRole', data: { userId: 'u1', role: 'owner', callerRole: 'admin' } }).thenThrows('ROLE_TOO_HIGH');
    spec.given([]).when({ type: 'InviteUser', data: { userId: 'u2', email: 'e', role: 'owner', callerRole: 'admin' } }).thenThrows('ROLE_TOO_HIGH');
  });

  it('invites a user once, then grants and revokes roles idempotently', () => {
    spec.given([]).when({ type: 'InviteUser', data: { userId: 'u1', email: 'kenc1::x', role: 'viewer', callerRole: 'owner' } }).then([invited]);
    spec.given([invited]).when({ type: 'InviteUser', data: { userId: 'u1', email: 'kenc1::y', role: 'admin', callerRole: 'owner' } }).thenThrows('ALREADY_EXISTS');
    spec.given([invited]).when({ type: 'GrantRole', data: { userId: 'u1', role: 'operator', callerRole: 'owner' } }).then([{ type: 'RoleGranted', data: { userId: 'u1', role: 'operator' } }]);
    spec.given([invited]).when({ type: 'GrantRole', data: { userId: 'u1', role: 'viewer', callerRole: 'owner' } }).thenNothing();
    spec.given([invited]).when({ type: 'RevokeRole', data: { userId: 'u1', role: 'viewer', callerRole: 'owner' } }).then([{ type: 'RoleRevoked', data: { userId: 'u1', role: 'viewer' } }]);
    spec.given([invited]).when({ type: 'RevokeRole', data: { userId: 'u1', role: 'admin', callerRole: 'owner' } }).thenNothing();
    spec.given([]).when({ type: 'GrantRole', data: { userId: 'u9', role: 'viewer', callerRole: 'owner' } }).thenThrows('NOT_FOUND');
  });
});
