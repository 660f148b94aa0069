import { NotFoundError, type EventStore, type RecordedEvent } from '@keel/shared-events';
import { captureDestinations, type CapturedEffect } from './destinations.ts';
import { parseFlowDefinition } from './definition.ts';
import type { FlowLookup } from './lookup.ts';
import { runStream } from './runner.ts';
import { executeStep, type StepDeps } from './steps.ts';
import { compileExpression, type Json } from './transform.ts';

/**
 * Dry-run re-execution: a recorded run is run again against its recorded input (the trigger
 * event in FlowRunStarted), with every destination captured instead of called (no HTTP request,
 * no token request, no database write), and compared step by step with what the run recorded.
 * With `version` it runs another version of the flow, to check a fix before publishing it live.
 */
export interface DryRunStep {
  stepIndex: number;
  type: string;
  outcome: 'succeeded' | 'failed' | 'deferred' | 'not_run';
  summary?: Json;
  error?: string;
  /** What would have been sent (redacted). */
  effect?: CapturedEffect;
}

export interface RecordedStep {
  stepIndex: number;
  outcome: 'succeeded' | 'failed';
  attempts: number;
  summary?: Json;
  error?: string;
}

export interface Difference {
  stepIndex: number;
  field: string;
  original: Json;
  dryRun: Json;
}

export interface DryRunResult {
  runId: string;
  flowId: string;
  recordedVersion: number;
  version: number;
  triggerEventId: string;
  original: { status: string; steps: RecordedStep[] };
  dryRun: { status: 'completed' | 'failed' | 'filtered_out' | 'deferred'; steps: DryRunStep[] };
  differences: Difference[];
  same: boolean;
}

export interface DryRunDeps {
  store: EventStore;
  lookup: FlowLookup;
  openSecret: StepDeps['openSecret'];
  defaultTimeoutMs: number;
}

export function recordedSteps(events: RecordedEvent[]): { status: string; steps: RecordedStep[] } {
  const steps = new Map<number, RecordedStep>();
  let status = 'running';
  for (const e of events) {
    const d = e.data as { stepIndex?: number; attempt?: number; summary?: Json; error?: string };
    if ((e.type === 'StepSucceeded' || e.type === 'StepFailed') && typeof d.stepIndex === 'number') {
      const s: RecordedStep = {
        stepIndex: d.stepIndex,
        outcome: e.type === 'StepSucceeded' ? 'succeeded' : 'failed',
        attempts: d.attempt ?? 1,
      };
      if (d.summary !== undefined) s.summary = d.summary;
      if (d.error !== undefined) s.error = d.error;
      steps.set(d.stepIndex, s);
    } else if (e.type === 'StepRetryScheduled') status = 'retrying';
    else if (e.type === 'FlowRunCompleted') status = 'completed';
    else if (e.type === 'FlowRunFailed') status = 'failed';
    else if (e.type === 'FlowRunDeadLettered') status = 'dead_lettered';
  }
  return { status, steps: [...steps.values()].sort((a, b) => a.stepIndex - b.stepIndex) };
}

/** Fields whose values are the step's observable behaviour (responses of a captured call are not). */
const COMPARED: Record<string, string[]> = {
  transform: ['outputHash', 'outputBytes', 'skipped'],
  http: ['request.method', 'request.url', 'request.bytes', 'request.body'],
  postgres: ['table', 'rows', 'statementHash'],
};

function at(obj: Json | undefined, path: string): Json | undefined {
  let cur: Json | undefined = obj;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

export function diffSteps(original: RecordedStep[], dry: DryRunStep[]): Difference[] {
  const out: Difference[] = [];
  const n = Math.max(original.length ? original[original.length - 1]!.stepIndex + 1 : 0, dry.length);
  for (let i = 0; i < n; i++) {
    const o = original.find((s) => s.stepIndex === i);
    const d = dry.find((s) => s.stepIndex === i);
    const oOutcome = o?.outcome ?? 'not_run';
    const dOutcome = d?.outcome ?? 'not_run';
    if (oOutcome !== dOutcome) out.push({ stepIndex: i, field: 'outcome', original: oOutcome, dryRun: dOutcome });
    if (o?.outcome === 'succeeded' && d?.outcome === 'succeeded') {
      for (const f of COMPARED[d.type] ?? []) {
        const a = at(o.summary, f);
        const b = at(d.summary, f);
        // Bodies are compared only when both sides kept them.
        if (f.endsWith('.body') && (a === undefined || b === undefined)) continue;
        if (JSON.stringify(a ?? null) !== JSON.stringify(b ?? null))
          out.push({ stepIndex: i, field: f, original: a ?? null, dryRun: b ?? null });
      }
    }
  }
  return out;
}

export async function dryRunFlowRun(
  deps: DryRunDeps,
  tenantId: string,
  runId: string,
  options: { version?: number } = {},
): Promise<DryRunResult> {
  const events = await deps.store.readStream(runStream(tenantId, runId));
  const started = events.find((e) => e.type === 'FlowRunStarted');
  if (!started) throw new NotFoundError(`run ${runId} not found`, { runId });
  const s = started.data as { flowId: string; flowVersion: number; triggerEventId: string; input: Json };
  const version = options.version ?? s.flowVersion;
  const raw = await deps.lookup.definition(tenantId, s.flowId, version);
  if (raw === undefined)
    throw new NotFoundError(`flow ${s.flowId} has no version ${version}`, { flowId: s.flowId, version });
  const def = parseFlowDefinition(raw);
  const original = recordedSteps(events);
  const capture = captureDestinations();
  const stepDeps: StepDeps = {
    connector: deps.lookup.connector,
    openSecret: deps.openSecret,
    destinations: capture,
    defaultTimeoutMs: deps.defaultTimeoutMs,
    guard: async (_destination, call) => ({ ran: true, value: (await call()).value }),
  };
  const steps: DryRunStep[] = [];
  let status: DryRunResult['dryRun']['status'] = 'completed';
  const trigger = s.input;
  if (
    def.trigger.condition &&
    (await compileExpression(def.trigger.condition, 'trigger.condition')
      .evaluate(trigger)
      .catch(() => false)) !== true
  ) {
    status = 'filtered_out';
  } else {
    const outputs: Json[] = [];
    for (let i = 0; i < def.steps.length; i++) {
      const step = def.steps[i]!;
      const before = capture.captured.length;
      const outcome = await executeStep(
        step,
        i === 0 ? trigger : (outputs[i - 1] ?? null),
        {
          tenantId,
          runId,
          stepIndex: i,
          attempt: 1,
          trigger,
          steps: outputs,
          captureBodies: def.captureBodies === true,
        },
        stepDeps,
      );
      const record: DryRunStep = { stepIndex: i, type: step.type, outcome: outcome.kind };
      const effect = capture.captured[before];
      if (effect) record.effect = effect;
      if (outcome.kind === 'succeeded') {
        record.summary = outcome.summary;
        steps.push(record);
        outputs[i] = outcome.output ?? null;
        if (outcome.output === undefined) break;
        continue;
      }
      if (outcome.kind === 'failed') {
        record.error = outcome.error;
        if (outcome.summary !== undefined) record.summary = outcome.summary;
        status = 'failed';
      } else {
        record.error = outcome.reason;
        status = 'deferred';
      }
      steps.push(record);
      break;
    }
  }
  const differences = diffSteps(original.steps, steps);
  return {
    runId,
    flowId: s.flowId,
    recordedVersion: s.flowVersion,
    version,
    triggerEventId: s.triggerEventId,
    original,
    dryRun: { status, steps },
    differences,
    same: differences.length === 0,
  };
}
