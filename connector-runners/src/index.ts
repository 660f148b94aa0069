/**
 * @keel/connector-runners: side effects with retries, circuit breaking and dead letters.
 * Webhook delivery (consumer group `runner-webhooks`) and flow runs (`runner-flows`).
 */
export { startRunners } from './start.ts';
export type { RunnersHandle, StartRunnersOptions } from './start.ts';
export { mountConnectorRunners, connectorRunnerMigrations } from './mount.ts';
export type { MountOptions } from './mount.ts';
export { loadRunnerConfig } from './config.ts';
export { runnerMetrics } from './metrics.ts';
export type { RunnerMetrics } from './metrics.ts';
export type { RunnerConfig } from './config.ts';
export { webhooksCli, webhooksRedrive, webhooksDead } from './cli/webhooks.ts';
/** `keel webhooks redrive <args>` and `keel webhooks dead <args>` (args after the subcommand). */
export { webhooksRedrive as webhooksRedriveCommand, webhooksDead as webhooksDeadCommand } from './cli/webhooks.ts';
export type { CliCommand, Out } from './cli/webhooks.ts';

// Building blocks, for receivers and tests.
export { signatureHeader, computeSignature, verifySignature, SIGNATURE_HEADER } from './webhooks/signature.ts';
export type { VerifyResult } from './webhooks/signature.ts';
export { WEBHOOK_GROUP, webhookStream, deliveryBody } from './webhooks/runner.ts';
export { FLOW_GROUP, runStream } from './flows/runner.ts';
export { parseFlowDefinition } from './flows/definition.ts';
export type { FlowDefinition, FlowStep, FlowTrigger } from './flows/definition.ts';
export { dryRunFlowRun } from './flows/dry-run.ts';
export type { DryRunResult } from './flows/dry-run.ts';
export { deliveryIdOf, runIdOf } from './ids.ts';
export { backoffDelay, decideRetry, parseRetryAfter } from './retry/backoff.ts';
export type { BackoffPolicy } from './retry/backoff.ts';
export { createCircuitBreaker, createBreakerRegistry } from './breaker.ts';
export type { BreakerOptions, BreakerState, CircuitBreaker } from './breaker.ts';
export { createKeyedLimiter } from './limiter.ts';
export { createHttpClient } from './http/client.ts';
export type { HttpClient, HttpRequest, HttpResult } from './http/client.ts';
