import { roles, type Role } from '../schemas/catalog.ts';

/**
 * The permission table (documented in command-service/README.md). Roles are not a strict
 * ladder: operators run things, auditors read the history, and both sit under admin.
 *
 *   owner  ⊇ admin ⊇ { operator, auditor } ⊇ viewer      (platform admin: everything, every tenant)
 *
 * `write: true` marks permissions refused while the tenant is suspended.
 */
export const permissionTable = {
  // tenant lifecycle
  'tenant:create': { roles: [], write: true, summary: 'create a tenant (platform admin only)' },
  'tenant:suspend': { roles: [], write: false, summary: 'suspend a tenant (platform admin only)' },
  'tenant:reinstate': { roles: [], write: false, summary: 'reinstate a suspended tenant (platform admin only)' },
  'tenant:erase': { roles: ['owner'], write: false, summary: 'erase a tenant: crypto-shred its data keys, revoke its keys' },
  'tenant:read': { roles: ['owner', 'admin', 'operator', 'auditor', 'viewer'], write: false, summary: 'see the tenant' },
  // access
  'apikey:issue': { roles: ['owner', 'admin'], write: true, summary: 'issue API keys (never above the caller\'s role)' },
  'apikey:revoke': { roles: ['owner', 'admin'], write: true, summary: 'revoke API keys' },
  'user:invite': { roles: ['owner', 'admin'], write: true, summary: 'invite users (never above the caller\'s role)' },
  'role:grant': { roles: ['owner', 'admin'], write: true, summary: 'grant roles (never above the caller\'s role)' },
  'role:revoke': { roles: ['owner', 'admin'], write: true, summary: 'revoke roles' },
  // data in
  'record:ingest': { roles: ['owner', 'admin', 'operator'], write: true, summary: 'batch ingest records' },
  // integration definitions
  'connector:write': { roles: ['owner', 'admin'], write: true, summary: 'install, rotate, pause, resume, remove connectors' },
  'flow:write': { roles: ['owner', 'admin'], write: true, summary: 'define, publish, enable, disable flows' },
  'webhook:write': { roles: ['owner', 'admin'], write: true, summary: 'register, update, remove outbound webhooks' },
  'source:write': { roles: ['owner', 'admin'], write: true, summary: 'register and remove inbound webhook sources' },
  'webhook:redrive': { roles: ['owner', 'admin', 'operator'], write: true, summary: 'redrive dead-lettered deliveries' },
  // read side
  'audit:read': { roles: ['owner', 'admin', 'auditor'], write: false, summary: 'read, export and verify the audit trail' },
  'stream:read': { roles: ['owner', 'admin', 'operator', 'auditor'], write: false, summary: 'stream state at a point, history' },
  'dashboard:read': { roles: ['owner', 'admin', 'operator', 'auditor', 'viewer'], write: false, summary: 'dashboards' },
} as const satisfies Record<string, { roles: readonly Role[]; write: boolean; summary: string }>;

export type Permission = keyof typeof permissionTable;

export const allPermissions = Object.keys(permissionTable) as Permission[];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (roles as readonly string[]).includes(value);
}

export function roleHas(role: Role, permission: Permission): boolean {
  return (permissionTable[permission].roles as readonly Role[]).includes(role);
}

export function isWritePermission(permission: Permission): boolean {
  return permissionTable[permission].write;
}

/** Roles each role may hand out (keys, invitations, grants): never above one's own. */
const assignable: Record<Role, readonly Role[]> = {
  owner: ['owner', 'admin', 'operator', 'auditor', 'viewer'],
  admin: ['admin', 'operator', 'auditor', 'viewer'],
  operator: [],
  auditor: [],
  viewer: [],
};

export function canAssignRole(callerRole: Role | 'platformAdmin', target: Role): boolean {
  return callerRole === 'platformAdmin' || assignable[callerRole].includes(target);
}

/** Highest of several roles (a user may hold more than one); undefined when none. */
export function highestRole(held: readonly Role[]): Role | undefined {
  const order: Role[] = ['owner', 'admin', 'operator', 'auditor', 'viewer'];
  return order.find((r) => held.includes(r));
}

/** The table as rows, for docs and the README. */
export function permissionRows(): { permission: Permission; roles: readonly Role[]; write: boolean; summary: string }[] {
  return allPermissions.map((p) => ({ permission: p, ...permissionTable[p] }));
}
