import type pg from 'pg';
import { HttpError } from '@keel/shared-events';

/**
 * Read-your-writes on demand: a write answers with its events' globalPosition; a read passing
 * `minPosition=<n>` waits (bounded) until the projection has applied everything of the tenant up
 * to n. A projector's per-tenant position (keel_projector_positions, written in the same
 * transaction as the read model) is the truth; on the PostgreSQL bus the group's global
 * checkpoint also counts (it passes n even when n was another tenant's event).
 */
export class ProjectionBehindError extends HttpError {
  constructor(projector: string, wanted: number, reached: number, waitedMs: number) {
    super(
      'PROJECTION_BEHIND',
      503,
      `the read model has not reached position ${wanted} within ${waitedMs} ms; retry later`,
      {
        projector,
        minPosition: wanted,
        position: reached,
      },
    );
  }
}

export interface PositionWaiter {
  position(projector: string, tenantId: string): Promise<number>;
  /** Resolves once reached; throws ProjectionBehindError after the wait bound. */
  waitFor(projector: string, tenantId: string, minPosition: number, signal?: AbortSignal): Promise<void>;
}

export function createPositionWaiter(pool: pg.Pool, options: { maxWaitMs: number; pollMs?: number }): PositionWaiter {
  const pollMs = options.pollMs ?? 25;
  async function position(projector: string, tenantId: string): Promise<number> {
    const r = await pool.query<{ position: string | null }>(
      `select greatest(
         (select position from keel_projector_positions where projector = $1 and tenant_id = $2),
         (select position from keel_bus_checkpoints where name = 'group:' || $1)
       ) as position`,
      [projector, tenantId],
    );
    return Number(r.rows[0]?.position ?? 0);
  }
  return {
    position,
    async waitFor(projector, tenantId, minPosition, signal) {
      const started = Date.now();
      for (;;) {
        const at = await position(projector, tenantId);
        if (at >= minPosition) return;
        const waited = Date.now() - started;
        if (waited >= options.maxWaitMs || signal?.aborted)
          throw new ProjectionBehindError(projector, minPosition, at, waited);
        await new Promise((r) => setTimeout(r, Math.min(pollMs, options.maxWaitMs - waited)));
      }
    },
  };
}
