import type { FastifyInstance } from 'fastify';
import type { AccessGuard, Authenticator, KeelRuntime } from '@keel/shared-events';
import {
  adminKeyBanner,
  createAccessGuard,
  createAuthenticator,
  loadAdminKey,
  loadAuthConfig,
} from '@keel/shared-events';
import { loadProjectionConfig } from './config.ts';
import type { ProjectionConfig } from './config.ts';
import { projectionRoutes } from './http/routes.ts';
import { projectionLag, registerLagGauge } from './projectors.ts';
import { verifyTenantChain } from './audit/verify.ts';
import type { VerifyResult } from './audit/verify.ts';

/**
 * projection-service: the read side. Projectors build the audit trail (per-tenant hash chain,
 * signed checkpoints) and the dashboard read models from the bus; the routes serve them, verify
 * the chain, rebuild projections and replay streams. See projection-service/README.md.
 */
export { projectionServiceMigrations, projectionNames, projectorGroup } from './db/schema.ts';
export type { ProjectionName } from './db/schema.ts';
export { startProjectors, projectionLag } from './projectors.ts';
export type { ProjectorsHandle, StartProjectorsOptions } from './projectors.ts';
export {
  rebuildProjection,
  rebuildStatus,
  RebuildBusyError,
  RebuildInterruptedError,
  ChainMismatchError,
  UnknownProjectionError,
} from './rebuild/rebuild.ts';
export type { RebuildOptions, RebuildProgress, RebuildResult } from './rebuild/rebuild.ts';
export { loadProjectionConfig, rebuildIndexMemoryMB } from './config.ts';
export type { ProjectionConfig } from './config.ts';
export type { VerifyResult } from './audit/verify.ts';
export { parseAuditPage } from './audit/filters.ts';
export { auditPageSql } from './audit/query.ts';
export { auditVerifyCommand } from './cli/audit-verify.ts';
export { projectionsRebuildCommand } from './cli/projections-rebuild.ts';
export { streamShowCommand } from './cli/stream-show.ts';

export interface MountProjectionOptions {
  config?: ProjectionConfig;
  /** Share the process's authenticator/guard (the all-in-one server); built from the environment when absent. */
  authenticator?: Authenticator;
  guard?: AccessGuard;
}

/** Recomputes a tenant's audit hash chain and checks its signed checkpoints. */
export async function verifyAuditChain(
  runtime: Pick<KeelRuntime, 'pool' | 'config'>,
  tenantId: string,
  options: { config?: ProjectionConfig; onProgress?: (checked: number) => void } = {},
): Promise<VerifyResult> {
  const config = options.config ?? loadProjectionConfig(runtime.config);
  return verifyTenantChain(runtime.pool, tenantId, config.keyring, { onProgress: options.onProgress });
}

/**
 * Mounts the read-side routes as one encapsulated plugin, and a `/ready` check of the read
 * models (reachable, and no projection further behind the store than KEEL_READY_MAX_LAG).
 * Projectors run separately: `startProjectors(runtime, bus)`.
 */
export async function mountProjectionService(
  app: FastifyInstance,
  runtime: KeelRuntime,
  options: MountProjectionOptions = {},
): Promise<void> {
  const config = options.config ?? loadProjectionConfig(runtime.config);
  let authenticator = options.authenticator;
  if (!authenticator) {
    const admin = loadAdminKey({ dataDir: runtime.config.dataDir });
    if (admin.generated) process.stderr.write(adminKeyBanner(admin) + '\n');
    const auth = loadAuthConfig();
    authenticator = createAuthenticator({
      pool: runtime.pool,
      adminKey: admin.key,
      jwt: auth.jwt,
      cacheTtlMs: auth.cacheTtlMs,
    });
  }
  const guard = options.guard ?? createAccessGuard({ authenticator, store: runtime.store, logger: runtime.logger });
  const ctx = { runtime, config, guard, authenticator };
  await app.register(async (scope) => projectionRoutes(scope, ctx));

  if (app.readiness) {
    // /ready fails beyond the allowed lag, and its body reports each projection's position and lag.
    let last: Awaited<ReturnType<typeof projectionLag>> | undefined;
    app.readiness.add('projections', async () => {
      last = await projectionLag(runtime);
      const behind = Object.entries(last).filter(([, v]) => v.lag > config.readyMaxLag);
      if (behind.length) throw new Error(behind.map(([p, v]) => `${p} is ${v.lag} events behind`).join('; '));
    });
    app.addHook('onSend', async (req, reply, payload) => {
      if (req.routeOptions.url !== '/ready' || typeof payload !== 'string' || !last) return payload;
      try {
        return JSON.stringify({ ...(JSON.parse(payload) as object), projections: last });
      } catch {
        return payload;
      }
    });
  }
  if (app.metrics) registerLagGauge(app.metrics, runtime);
}
