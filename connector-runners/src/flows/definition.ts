import { ValidationError } from '@keel/shared-events';

/**
 * A flow definition (the `definition` of FlowDefined / FlowVersionPublished):
 *
 *   { "trigger": { "eventType": "RecordIngested", "source": "crm", "entityType": "contact" },
 *     "steps": [ { "type": "transform", "expression": "{ 'id': data.externalId, 'name': data.payload.name }" },
 *                { "type": "postgres", "connectorId": "...", "table": "contacts", "key": ["id"] } ],
 *     "captureBodies": false }
 *
 * The trigger's `source` / `entityType` filter records; `condition` is an optional JSONata
 * predicate over the triggering event envelope. Steps run in order; each one's output is the next
 * one's input. The first step's input is the triggering event envelope (type, tenantId, data, ...).
 */
export interface FlowTrigger {
  eventType: string;
  source?: string;
  entityType?: string;
  /** JSONata predicate over the trigger event; the flow runs when it yields true. */
  condition?: string;
}

/** Leaves are JSONata expressions; nested objects build nested output. */
export type Mapping = { [field: string]: string | Mapping };

export type TransformStep = { type: 'transform'; expression?: string; mapping?: Mapping };
export type HttpStep = {
  type: 'http';
  connectorId: string;
  method: string;
  /** Relative to the connector's baseUrl when not absolute; `{{expr}}` parts are JSONata over the step input, URL-encoded. */
  url: string;
  headers?: Record<string, string>;
  /** JSONata over the step input giving the body; default: the input itself as JSON. Ignored for GET/HEAD. */
  body?: string;
  timeoutMs?: number;
  /** Kept in the step summary (redacted) when true. */
  captureBodies?: boolean;
};
export type PostgresStep = {
  type: 'postgres';
  connectorId: string;
  table: string;
  schema?: string;
  /** Columns of the conflict target (a primary key or unique index of the table). */
  key: string[];
  /** Columns to write; default: every field of the input row. */
  columns?: string[];
};
export type FlowStep = TransformStep | HttpStep | PostgresStep;

export interface FlowRetryPolicy {
  maxAttempts?: number;
  baseMs?: number;
  maxMs?: number;
}

export interface FlowDefinition {
  trigger: FlowTrigger;
  steps: FlowStep[];
  captureBodies?: boolean;
  retry?: FlowRetryPolicy;
}

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function str(o: Obj, k: string, path: string, required: true): string;
function str(o: Obj, k: string, path: string, required?: false): string | undefined;
function str(o: Obj, k: string, path: string, required = false): string | undefined {
  const v = o[k];
  if (v === undefined) {
    if (required) throw new ValidationError(`${path}.${k} is required`, `${path}.${k}`);
    return undefined;
  }
  if (typeof v !== 'string' || v === '')
    throw new ValidationError(`${path}.${k} must be a non-empty string`, `${path}.${k}`);
  return v;
}

function posInt(o: Obj, k: string, path: string, max: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new ValidationError(`${path}.${k} must be a whole number from 1 to ${max}`, `${path}.${k}`);
  return v;
}

function unknownKeys(o: Obj, allowed: string[], path: string): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) throw new ValidationError(`${path}.${k} is not a known field`, `${path}.${k}`);
}

function mapping(v: unknown, path: string): Mapping {
  if (!isObj(v) || Object.keys(v).length === 0) throw new ValidationError(`${path} must be a non-empty object`, path);
  const out: Mapping = {};
  for (const [k, leaf] of Object.entries(v)) {
    if (typeof leaf === 'string') out[k] = leaf;
    else if (isObj(leaf)) out[k] = mapping(leaf, `${path}.${k}`);
    else throw new ValidationError(`${path}.${k} must be a JSONata expression string or an object`, `${path}.${k}`);
  }
  return out;
}

function identifier(v: string, path: string): string {
  if (!IDENT.test(v)) throw new ValidationError(`${path} must be a plain SQL identifier (letters, digits, _)`, path);
  return v;
}

/** Validates a definition as stored in a flow event; throws ValidationError naming the field. */
export function parseFlowDefinition(raw: unknown): FlowDefinition {
  const p = 'definition';
  if (!isObj(raw)) throw new ValidationError(`${p} must be an object`, p);
  unknownKeys(raw, ['trigger', 'steps', 'captureBodies', 'retry'], p);
  const t = raw.trigger;
  if (!isObj(t)) throw new ValidationError(`${p}.trigger must be an object`, `${p}.trigger`);
  unknownKeys(t, ['eventType', 'source', 'entityType', 'condition'], `${p}.trigger`);
  const trigger: FlowTrigger = { eventType: str(t, 'eventType', `${p}.trigger`, true) };
  const source = str(t, 'source', `${p}.trigger`);
  const entityType = str(t, 'entityType', `${p}.trigger`);
  const condition = str(t, 'condition', `${p}.trigger`);
  if (source !== undefined) trigger.source = source;
  if (entityType !== undefined) trigger.entityType = entityType;
  if (condition !== undefined) trigger.condition = condition;

  if (!Array.isArray(raw.steps) || raw.steps.length === 0 || raw.steps.length > 20)
    throw new ValidationError(`${p}.steps must be a list of 1 to 20 steps`, `${p}.steps`);
  const steps = raw.steps.map((s: unknown, i: number): FlowStep => {
    const sp = `${p}.steps.${i}`;
    if (!isObj(s)) throw new ValidationError(`${sp} must be an object`, sp);
    switch (s.type) {
      case 'transform': {
        unknownKeys(s, ['type', 'expression', 'mapping'], sp);
        const expression = str(s, 'expression', sp);
        if ((expression === undefined) === (s.mapping === undefined))
          throw new ValidationError(`${sp} needs exactly one of expression or mapping`, sp);
        return expression !== undefined
          ? { type: 'transform', expression }
          : { type: 'transform', mapping: mapping(s.mapping, `${sp}.mapping`) };
      }
      case 'http': {
        unknownKeys(s, ['type', 'connectorId', 'method', 'url', 'headers', 'body', 'timeoutMs', 'captureBodies'], sp);
        const method = (str(s, 'method', sp) ?? 'POST').toUpperCase();
        if (!METHODS.has(method))
          throw new ValidationError(`${sp}.method must be one of ${[...METHODS].join(', ')}`, `${sp}.method`);
        const step: HttpStep = {
          type: 'http',
          connectorId: str(s, 'connectorId', sp, true),
          method,
          url: str(s, 'url', sp, true),
        };
        if (s.headers !== undefined) {
          if (!isObj(s.headers) || !Object.values(s.headers).every((v) => typeof v === 'string'))
            throw new ValidationError(`${sp}.headers must map names to strings`, `${sp}.headers`);
          step.headers = s.headers as Record<string, string>;
        }
        const body = str(s, 'body', sp);
        if (body !== undefined) step.body = body;
        const timeoutMs = posInt(s, 'timeoutMs', sp, 120_000);
        if (timeoutMs !== undefined) step.timeoutMs = timeoutMs;
        if (s.captureBodies !== undefined) {
          if (typeof s.captureBodies !== 'boolean')
            throw new ValidationError(`${sp}.captureBodies must be true or false`, `${sp}.captureBodies`);
          step.captureBodies = s.captureBodies;
        }
        return step;
      }
      case 'postgres': {
        unknownKeys(s, ['type', 'connectorId', 'table', 'schema', 'key', 'columns'], sp);
        const step: PostgresStep = {
          type: 'postgres',
          connectorId: str(s, 'connectorId', sp, true),
          table: identifier(str(s, 'table', sp, true), `${sp}.table`),
          key: [],
        };
        const schema = str(s, 'schema', sp);
        if (schema !== undefined) step.schema = identifier(schema, `${sp}.schema`);
        if (!Array.isArray(s.key) || s.key.length === 0 || !s.key.every((k) => typeof k === 'string'))
          throw new ValidationError(`${sp}.key must be a non-empty list of column names`, `${sp}.key`);
        step.key = (s.key as string[]).map((k, j) => identifier(k, `${sp}.key.${j}`));
        if (s.columns !== undefined) {
          if (!Array.isArray(s.columns) || s.columns.length === 0 || !s.columns.every((k) => typeof k === 'string'))
            throw new ValidationError(`${sp}.columns must be a non-empty list of column names`, `${sp}.columns`);
          step.columns = (s.columns as string[]).map((k, j) => identifier(k, `${sp}.columns.${j}`));
          for (const k of step.key)
            if (!step.columns.includes(k))
              throw new ValidationError(`${sp}.columns must include the key column ${k}`, `${sp}.columns`);
        }
        return step;
      }
      default:
        throw new ValidationError(`${sp}.type must be transform, http or postgres`, `${sp}.type`);
    }
  });
  const def: FlowDefinition = { trigger, steps };
  if (raw.captureBodies !== undefined) {
    if (typeof raw.captureBodies !== 'boolean')
      throw new ValidationError(`${p}.captureBodies must be true or false`, `${p}.captureBodies`);
    def.captureBodies = raw.captureBodies;
  }
  if (raw.retry !== undefined) {
    if (!isObj(raw.retry)) throw new ValidationError(`${p}.retry must be an object`, `${p}.retry`);
    unknownKeys(raw.retry, ['maxAttempts', 'baseMs', 'maxMs'], `${p}.retry`);
    const retry: FlowRetryPolicy = {};
    const maxAttempts = posInt(raw.retry, 'maxAttempts', `${p}.retry`, 50);
    const baseMs = posInt(raw.retry, 'baseMs', `${p}.retry`, 3_600_000);
    const maxMs = posInt(raw.retry, 'maxMs', `${p}.retry`, 86_400_000);
    if (maxAttempts !== undefined) retry.maxAttempts = maxAttempts;
    if (baseMs !== undefined) retry.baseMs = baseMs;
    if (maxMs !== undefined) retry.maxMs = maxMs;
    def.retry = retry;
  }
  return def;
}

/** Whether an event triggers the flow, before the optional JSONata condition. */
export function triggerMatches(trigger: FlowTrigger, event: { type: string; data: Record<string, unknown> }): boolean {
  if (trigger.eventType !== event.type) return false;
  if (trigger.source !== undefined && event.data.source !== trigger.source) return false;
  if (trigger.entityType !== undefined && event.data.entityType !== trigger.entityType) return false;
  return true;
}
