import jsonata from 'jsonata';
import { ValidationError } from '@keel/shared-events';
import type { Mapping } from './definition.ts';

/**
 * JSONata evaluation for transform steps, trigger conditions and templates. Expressions are
 * tenant-written code, so each evaluation is fenced: a time budget, a recursion depth and a
 * sequence size (jsonata's own guardrails), and the result is forced to plain JSON.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface TransformLimits {
  timeoutMs: number;
  maxDepth: number;
  maxSequence: number;
}

export const defaultTransformLimits: TransformLimits = { timeoutMs: 1_000, maxDepth: 500, maxSequence: 100_000 };

/** An expression failed at run time (the input did not fit it, or it ran out of budget): not retryable. */
export class TransformError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'TransformError';
  }
}

export interface CompiledExpression {
  readonly source: string;
  /**
   * `undefined` when the expression yields nothing (e.g. a path that matches nothing).
   * `bindings` become `$name` variables (the runner binds `$trigger` and `$steps`).
   */
  evaluate(input: unknown, bindings?: Record<string, unknown>): Promise<Json | undefined>;
}

const cache = new Map<string, jsonata.Expression>();
const CACHE_MAX = 2_000;

function compileRaw(source: string, limits: TransformLimits, field: string): jsonata.Expression {
  const key = `${limits.timeoutMs}|${limits.maxDepth}|${limits.maxSequence}|${source}`;
  let expr = cache.get(key);
  if (expr) return expr;
  try {
    expr = jsonata(source, { timeout: limits.timeoutMs, stack: limits.maxDepth, sequence: limits.maxSequence });
  } catch (e) {
    const je = e as { message?: string; position?: number; code?: string };
    throw new ValidationError(`${field} is not a valid JSONata expression: ${je.message ?? String(e)}`, field, {
      position: je.position,
      code: je.code,
    });
  }
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, expr);
  return expr;
}

/** JSONata sequences are arrays with extra flags and may hold functions; keep only JSON. */
export function toJson(v: unknown): Json | undefined {
  if (v === undefined || typeof v === 'function') return undefined;
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (Array.isArray(v)) return v.map((x) => toJson(x) ?? null);
  if (typeof v === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const j = toJson(x);
      if (j !== undefined) out[k] = j;
    }
    return out;
  }
  return undefined;
}

export function compileExpression(
  source: string,
  field = 'expression',
  limits: TransformLimits = defaultTransformLimits,
): CompiledExpression {
  const expr = compileRaw(source, limits, field);
  return {
    source,
    async evaluate(input, bindings) {
      try {
        return toJson(await expr.evaluate(input, bindings));
      } catch (e) {
        const je = e as { message?: string; code?: string };
        throw new TransformError(`${field}: ${je.message ?? String(e)}`, je.code);
      }
    },
  };
}

/** A declarative mapping: each leaf is an expression over the same input; the output has the mapping's shape. */
export function compileMapping(
  mapping: Mapping,
  field = 'mapping',
  limits: TransformLimits = defaultTransformLimits,
): CompiledExpression {
  const entries = Object.entries(mapping).map(
    ([k, v]) =>
      [
        k,
        typeof v === 'string'
          ? compileExpression(v, `${field}.${k}`, limits)
          : compileMapping(v, `${field}.${k}`, limits),
      ] as const,
  );
  return {
    source: JSON.stringify(mapping),
    async evaluate(input, bindings) {
      const out: { [k: string]: Json } = {};
      for (const [k, e] of entries) {
        const v = await e.evaluate(input, bindings);
        if (v !== undefined) out[k] = v;
      }
      return out;
    },
  };
}

const TEMPLATE = /\{\{([^}]+)\}\}/g;

/**
 * `https://api.example.com/contacts/{{id}}?src={{source}}`: each `{{expr}}` is JSONata over
 * `input`; `encode` escapes the values (URLs), so a value cannot change the URL's structure.
 */
export async function renderTemplate(
  template: string,
  input: unknown,
  options: { encode: boolean; field: string; limits?: TransformLimits; bindings?: Record<string, unknown> },
): Promise<string> {
  const parts: string[] = [];
  let last = 0;
  for (const m of template.matchAll(TEMPLATE)) {
    parts.push(template.slice(last, m.index));
    const v = await compileExpression(m[1]!.trim(), options.field, options.limits).evaluate(input, options.bindings);
    if (v === undefined || v === null)
      throw new TransformError(`${options.field}: {{${m[1]!.trim()}}} has no value`, 'T0001');
    const s = typeof v === 'string' ? v : JSON.stringify(v);
    parts.push(options.encode ? encodeURIComponent(s) : s);
    last = m.index + m[0].length;
  }
  parts.push(template.slice(last));
  return parts.join('');
}

/** Compile-time check of every `{{expr}}` of a template (definitions are checked before they run). */
export function checkTemplate(template: string, field: string): void {
  for (const m of template.matchAll(TEMPLATE)) compileRaw(m[1]!.trim(), defaultTransformLimits, field);
}
