import type pg from 'pg';
import type { BusConsumer, EventBus, KeelRuntime } from '@keel/shared-events';
import { projector } from '@keel/shared-events';
import { Counter, Gauge, type Registry } from 'prom-client';
import { applyAuditBatch, checkpointStaleHeads } from './audit/store.ts';
import { loadProjectionConfig } from './config.ts';
import type { ProjectionConfig } from './config.ts';
import { applyDashboardBatch } from './dashboard/store.ts';
import { projectionNames, projectorGroup, tableNames } from './db/schema.ts';
import type { ProjectionName } from './db/schema.ts';
import { withWriteTx } from './read/tenant-tx.ts';

/**
 * The projectors `projector-audit` and `projector-dashboard` as consumer groups on the bus
 * (Kafka or the PostgreSQL log). The shared `projector` helper applies a batch and stores the
 * per-tenant positions in one transaction (effectively once); the audit projector also signs
 * checkpoints every N rows of a chain, and a timer signs chains that grew but saw no checkpoint
 * for M minutes.
 */
export interface ProjectorsHandle {
  /** Resolves once every consumer has joined its group. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

export interface StartProjectorsOptions {
  config?: ProjectionConfig;
  /** Default both. */
  projections?: ProjectionName[];
  /** Prometheus registry for keel_projection_* metrics (default: none). */
  metrics?: Registry;
  maxBatchSize?: number;
}

function metricsFor(registry: Registry | undefined) {
  if (!registry) return undefined;
  const existing = registry.getSingleMetric('keel_projection_events_applied_total') as
    Counter<'projection'> | undefined;
  return {
    applied:
      existing ??
      new Counter({
        name: 'keel_projection_events_applied_total',
        help: 'Events applied to a read model',
        labelNames: ['projection'],
        registers: [registry],
      }),
  };
}

export async function startProjectors(
  runtime: Pick<KeelRuntime, 'pool' | 'logger' | 'config'>,
  bus: EventBus,
  options: StartProjectorsOptions = {},
): Promise<ProjectorsHandle> {
  const config = options.config ?? loadProjectionConfig(runtime.config);
  const which = options.projections ?? [...projectionNames];
  const log = runtime.logger.child({ component: 'projectors' });
  const metrics = metricsFor(options.metrics);
  const consumers: BusConsumer[] = [];

  const applyFor: Record<
    ProjectionName,
    (events: Parameters<typeof applyDashboardBatch>[2], tx: pg.PoolClient) => Promise<void>
  > = {
    audit: async (events, tx) => {
      await applyAuditBatch(tx, events, {
        tables: tableNames('audit'),
        signer: config.signer,
        checkpointEvery: config.checkpointEvery,
      });
    },
    dashboard: async (events, tx) => {
      await applyDashboardBatch(tx, tableNames('dashboard'), events);
    },
  };

  try {
    for (const projection of which) {
      const group = projectorGroup[projection];
      const consumer = await bus.consume({
        group,
        maxBatchSize: options.maxBatchSize ?? 1000,
        handler: projector({
          name: group,
          pool: runtime.pool,
          logger: log,
          apply: async (events, tx) => {
            await applyFor[projection](events, tx);
            metrics?.applied.inc({ projection }, events.length);
          },
        }),
      });
      consumer.done.catch((err: unknown) => log.error({ err, group }, 'projector stopped on a fatal error'));
      consumers.push(consumer);
    }
  } catch (e) {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    throw e;
  }

  // Time-based checkpoints (only where the audit projector runs).
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  if (which.includes('audit')) {
    const everyMs = config.checkpointMinutes * 60_000;
    const tick = async () => {
      try {
        const n = await withWriteTx(runtime.pool, (c) => checkpointStaleHeads(c, config.signer, everyMs));
        if (n) log.info({ chains: n }, 'signed time-based audit checkpoints');
      } catch (err) {
        log.warn({ err }, 'time-based audit checkpoint failed; retrying at the next tick');
      }
    };
    timer = setInterval(
      () => {
        ticking ??= tick().finally(() => (ticking = undefined));
      },
      Math.min(everyMs, 60_000),
    );
    timer.unref();
  }

  return {
    ready: Promise.all(consumers.map((c) => c.ready)).then(() => undefined),
    async stop() {
      if (timer) clearInterval(timer);
      await ticking;
      await Promise.allSettled(consumers.map((c) => c.stop()));
    },
  };
}

/** Per projection: the newest position applied and how far the store's head is ahead of it. */
export async function projectionLag(
  runtime: Pick<KeelRuntime, 'pool' | 'store'>,
): Promise<Record<ProjectionName, { position: number; lag: number }>> {
  const head = await runtime.store.headPosition();
  const r = await runtime.pool.query<{ projector: string; position: string | null }>(
    `select g.projector, greatest(
        (select max(position) from keel_projector_positions p where p.projector = g.projector),
        (select position from keel_bus_checkpoints c where c.name = 'group:' || g.projector)) as position
       from unnest($1::text[]) as g(projector)`,
    [projectionNames.map((p) => projectorGroup[p])],
  );
  const out = {} as Record<ProjectionName, { position: number; lag: number }>;
  for (const p of projectionNames) {
    const position = Number(r.rows.find((x) => x.projector === projectorGroup[p])?.position ?? 0);
    out[p] = { position, lag: Math.max(0, head - position) };
  }
  return out;
}

export function registerLagGauge(registry: Registry, runtime: Pick<KeelRuntime, 'pool' | 'store'>): void {
  if (registry.getSingleMetric('keel_projection_lag_events')) return;
  new Gauge({
    name: 'keel_projection_lag_events',
    help: "How far the store's head is ahead of a read model (global positions)",
    labelNames: ['projection'],
    registers: [registry],
    async collect() {
      try {
        const lag = await projectionLag(runtime);
        for (const [projection, v] of Object.entries(lag)) this.set({ projection }, v.lag);
      } catch {
        // /metrics must answer even when the database does not; /ready reports that.
      }
    },
  });
}
