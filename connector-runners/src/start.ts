import {
  runner,
  type BusBatch,
  type BusConsumer,
  type BusHandler,
  type EventBus,
  type KeelRuntime,
} from '@keel/shared-events';
import type { Logger } from 'pino';
import { loadRunnerConfig, type RunnerConfig } from './config.ts';
import { createFlowRunner, FLOW_GROUP, NEVER_TRIGGERS, type FlowRunner } from './flows/runner.ts';
import { createHttpClient, threadHttpClient } from './http/client.ts';
import { runnerMetrics } from './metrics.ts';
import { keyringFor, secretOpener } from './runtime-deps.ts';
import { createLimiter, loadBreakers, newInstanceId, type RunnerServices, type SecretOpener } from './services.ts';
import { createWebhookRunner, DELIVERY_OUTCOMES, WEBHOOK_GROUP, type WebhookRunner } from './webhooks/runner.ts';

export interface StartRunnersOptions {
  /** Default: from the environment (loadRunnerConfig). */
  config?: RunnerConfig;
  /** Default: the keyring of the runtime's database under KEEL_MASTER_KEY. */
  openSecret?: SecretOpener;
  /** Which runners to start. Default both. */
  runners?: ('webhooks' | 'flows')[];
}

export interface RunnersHandle {
  /** Resolves once both consumer groups receive events. */
  readonly ready: Promise<void>;
  webhooks?: WebhookRunner;
  flows?: FlowRunner;
  /**
   * Graceful: the consumers finish the batch in hand, in-flight deliveries and steps get the
   * shutdown grace period to finish and record their outcome, and whatever is still running then
   * is handed back (due at once, for the next runner). Nothing acknowledged is lost either way.
   */
  stop(): Promise<void>;
}

/** Errors of the data, not of the database being away: these are worth isolating event by event. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return /^(22|23|42)/.test(code);
  return err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError;
}

/**
 * A batch that cannot be taken in is retried by the bus (with backoff). If it keeps failing
 * because of what is in it, the batch is taken in event by event through the shared `runner`
 * helper, so the one poisoned event goes to the bus dead letter with its reason and the rest of
 * its partition moves on. A database outage never dead-letters anything: it just retries.
 */
function resilient(group: string, intake: BusHandler, bus: EventBus, logger: Logger, maxAttempts: number): BusHandler {
  // The helper dead-letters after maxAttempts whatever the error; a failure of the database (not of
  // the event) must not cost an event, so its dead letter is refused and the event comes again.
  let lastWasTransient = false;
  const deadLetters: Pick<EventBus, 'deadLetter'> = {
    deadLetter: (entry) =>
      lastWasTransient
        ? Promise.reject(new Error('transient failure: retried, not dead-lettered'))
        : bus.deadLetter(entry),
  };
  const perEvent = runner({
    name: group,
    bus: deadLetters,
    maxAttempts,
    backoff: { initialMs: 200, maxMs: 5_000 },
    logger,
    handle: async (event) => {
      try {
        await intake({
          group,
          events: [event],
          lane: 'single',
          heartbeat: async () => undefined,
          isRunning: () => true,
        } satisfies BusBatch);
        lastWasTransient = false;
      } catch (err) {
        lastWasTransient = !isDataError(err);
        throw err;
      }
    },
  });
  let failures = 0;
  return async (batch) => {
    try {
      const ack = await intake(batch);
      failures = 0;
      return ack;
    } catch (err) {
      failures++;
      logger.error(
        { group, tenantId: batch.events[0]?.tenantId, failures, err: (err as Error).message },
        'bus batch not taken in',
      );
      if (!isDataError(err) || failures < 3) throw err;
      failures = 0;
      return perEvent(batch);
    }
  };
}

export async function startRunners(
  runtime: KeelRuntime,
  bus: EventBus,
  options: StartRunnersOptions = {},
): Promise<RunnersHandle> {
  const config = options.config ?? loadRunnerConfig();
  const logger = runtime.logger.child({ service: 'connector-runners' });
  const metrics = runnerMetrics();
  const allowPrivateNetworks =
    config.privateNetworks === 'allow' || (config.privateNetworks === 'auto' && runtime.config.profile === 'embedded');
  const http = (config.httpThread ? threadHttpClient : createHttpClient)({ connectionsPerOrigin: config.perDestination, allowPrivateNetworks });
  if (!allowPrivateNetworks) logger.info('outbound calls to private and local addresses are refused (KEEL_RUNNER_PRIVATE_NETWORKS)');
  const svc: RunnerServices = {
    pool: runtime.pool,
    store: runtime.store,
    logger,
    config,
    http,
    breakers: await loadBreakers(runtime.pool, config, logger, metrics),
    limiter: createLimiter(config),
    openSecret: options.openSecret ?? secretOpener(keyringFor(runtime)),
    instanceId: newInstanceId(),
    metrics,
  };
  const which = new Set(options.runners ?? ['webhooks', 'flows']);
  // The runners' own outcome events come back through the bus; they matter to neither group (the
  // redrive event does), so the bus leaves them out: on the PostgreSQL bus they are not even read.
  // Only with a registry that lists its types: an include-list must not miss a type.
  const registry = runtime.registry as { eventTypes?: () => string[] };
  const allTypes = typeof registry.eventTypes === 'function' ? registry.eventTypes() : undefined;
  const webhookFilter = allTypes && { eventTypes: allTypes.filter((t) => !DELIVERY_OUTCOMES.includes(t)) };
  const flowFilter = allTypes && { eventTypes: allTypes.filter((t) => !NEVER_TRIGGERS.has(t)) };
  const consumers: BusConsumer[] = [];
  const handle: { webhooks?: WebhookRunner; flows?: FlowRunner } = {};
  try {
    if (which.has('webhooks')) {
      const webhooks = createWebhookRunner(svc);
      webhooks.start();
      handle.webhooks = webhooks;
      consumers.push(
        await bus.consume({
          group: WEBHOOK_GROUP,
          ...(webhookFilter && { filter: webhookFilter }),
          maxBatchSize: 2000,
          handler: resilient(WEBHOOK_GROUP, webhooks.intake, bus, logger, config.busMaxAttempts),
        }),
      );
    }
    if (which.has('flows')) {
      const flows = createFlowRunner(svc);
      flows.start();
      handle.flows = flows;
      consumers.push(
        await bus.consume({
          group: FLOW_GROUP,
          ...(flowFilter && { filter: flowFilter }),
          maxBatchSize: 1000,
          handler: resilient(FLOW_GROUP, flows.intake, bus, logger, config.busMaxAttempts),
        }),
      );
    }
  } catch (err) {
    await Promise.allSettled(consumers.map((c) => c.stop()));
    await Promise.allSettled([handle.webhooks?.stop(), handle.flows?.stop()]);
    await http.close();
    throw err;
  }
  logger.info({ instance: svc.instanceId, runners: [...which], bus: bus.kind }, 'connector runners started');
  let stopped: Promise<void> | undefined;
  return {
    ...handle,
    ready: Promise.all(consumers.map((c) => c.ready)).then(() => undefined),
    stop() {
      stopped ??= (async () => {
        // First no new intake, then the work in hand, then the connections.
        await Promise.allSettled(consumers.map((c) => c.stop()));
        await Promise.allSettled([handle.webhooks?.stop(), handle.flows?.stop()]);
        await http.close().catch(() => undefined);
        logger.info({ instance: svc.instanceId }, 'connector runners stopped');
      })();
      return stopped;
    },
  };
}
