import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import type { Logger } from 'pino';
import { streamName, type Actor } from '../envelope.ts';
import { HttpError } from '../http/errors.ts';
import type { EventStore } from '../store/port.ts';
import { AuthError, type Authenticator, type Principal, type TenantInfo } from './authenticator.ts';
import { isWritePermission, permissionTable, roleHas, type Permission } from './roles.ts';

/**
 * The door of every tenant route, on the write side and the read side alike:
 * authenticate → resolve the tenant of the route → check the role's permission → refuse writes
 * to a suspended tenant. It runs as an `onRequest` hook, before the body is read, so an
 * unauthenticated caller costs no parsing.
 *
 * A caller reaching into another tenant gets the same 404 as for a tenant that does not exist
 * (no probing), and the attempt is appended as `AccessDenied` to the caller's own tenant trail.
 */
export interface AccessGuardOptions {
  authenticator: Authenticator;
  store: EventStore;
  logger?: Logger;
  /** Per tenant; denials beyond it are logged, not appended (a flood must not fill the log). Default 20. */
  deniedEventsPerSecond?: number;
}

export interface AccessGuard {
  /** `onRequest` hook for a route needing `permission`; the tenant comes from `params[tenantParam]` (default 'tenantId'). */
  require(permission: Permission, options?: { tenantParam?: string }): onRequestAsyncHookHandler;
  /** Appends `AccessDenied` to the caller's tenant trail (no-op for platform admins). */
  recordDenied(
    req: FastifyRequest,
    who: { tenantId: string; keyId?: string; actor: Actor },
    reason: string,
    targetTenantId?: string,
  ): Promise<void>;
}

export interface RequestAccess {
  principal: Principal;
  /** The route's tenant (absent on routes without one). */
  tenant?: TenantInfo;
}

const access = new WeakMap<FastifyRequest, RequestAccess>();

/** The principal and tenant the guard resolved for this request; throws when the route has no guard. */
export function accessOf(req: FastifyRequest): RequestAccess {
  const a = access.get(req);
  if (!a) throw new Error(`route ${req.routeOptions.url} has no access guard`);
  return a;
}

export function principalOf(req: FastifyRequest): Principal {
  return accessOf(req).principal;
}

/** The stream AccessDenied events go to: `access-<tenant>-denials`, apart from the access aggregate. */
export function deniedStream(tenantId: string): string {
  return streamName('access', tenantId, 'denials');
}

export const tenantNotFound = (): HttpError => new HttpError('NOT_FOUND', 404, 'tenant not found');

export function createAccessGuard(options: AccessGuardOptions): AccessGuard {
  const { authenticator, store } = options;
  const perSecond = options.deniedEventsPerSecond ?? 20;
  const budget = new Map<string, { second: number; used: number }>();

  async function recordDenied(
    req: FastifyRequest,
    who: { tenantId: string; keyId?: string; actor: Actor },
    reason: string,
    targetTenantId?: string,
  ): Promise<void> {
    const second = Math.floor(Date.now() / 1000);
    const b = budget.get(who.tenantId);
    if (!b || b.second !== second) budget.set(who.tenantId, { second, used: 1 });
    else if (++b.used > perSecond) {
      req.log.warn({ reason }, 'access denied (not appended: denial budget exceeded)');
      return;
    }
    if (budget.size > 10_000) budget.clear();
    const path = req.url.split('?')[0]!.slice(0, 512);
    const data: Record<string, unknown> = { method: req.method, path, reason };
    if (who.keyId) data.keyId = who.keyId;
    if (targetTenantId) data.targetTenantId = targetTenantId.slice(0, 200);
    try {
      await store.appendToStream(deniedStream(who.tenantId), [
        { type: 'AccessDenied', tenantId: who.tenantId, actor: who.actor, data, correlationId: req.correlationId },
      ]);
    } catch (err) {
      // The caller still gets its refusal; losing the audit record is logged loudly.
      (options.logger ?? req.log).error({ err, reason }, 'could not append AccessDenied');
    }
  }

  function require(permission: Permission, opts: { tenantParam?: string } = {}): onRequestAsyncHookHandler {
    const param = opts.tenantParam ?? 'tenantId';
    const write = isWritePermission(permission);
    return async function keelAccessGuard(req: FastifyRequest, _reply: FastifyReply) {
      let principal: Principal;
      try {
        principal = await authenticator.authenticate(req.headers.authorization);
      } catch (e) {
        if (e instanceof AuthError && e.audit) await recordDenied(req, e.audit, e.audit.reason);
        throw e;
      }
      const targetId = (req.params as Record<string, string | undefined>)[param];
      let tenant: TenantInfo | undefined;
      if (targetId !== undefined) {
        if (principal.kind !== 'platformAdmin' && principal.tenantId !== targetId) {
          await recordDenied(req, { ...principal, keyId: principal.kind === 'apiKey' ? principal.keyId : undefined }, 'cross-tenant', targetId);
          throw tenantNotFound();
        }
        tenant = await authenticator.tenant(targetId);
        if (!tenant) throw tenantNotFound();
      }
      const allowed = principal.kind === 'platformAdmin' || roleHas(principal.role, permission);
      if (!allowed) {
        if (principal.kind !== 'platformAdmin')
          await recordDenied(
            req,
            { ...principal, keyId: principal.kind === 'apiKey' ? principal.keyId : undefined },
            `forbidden: ${permission}`,
          );
        const who = permissionTable[permission].roles.length ? `roles ${permissionTable[permission].roles.join(', ')}` : 'the platform admin';
        throw new HttpError('FORBIDDEN', 403, `${permission} needs ${who}`, { permission });
      }
      if (tenant && write) {
        if (tenant.status === 'erased') throw new HttpError('TENANT_ERASED', 410, 'the tenant was erased');
        if (tenant.status === 'suspended') throw new HttpError('TENANT_SUSPENDED', 403, 'the tenant is suspended');
      }
      access.set(req, { principal, tenant });
    };
  }

  return { require, recordDenied };
}
