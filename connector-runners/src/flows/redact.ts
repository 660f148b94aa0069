import { createHash } from 'node:crypto';

/**
 * Summaries of what a step sent and received go into events (the audit trail, the dashboard, the
 * live run log). They must never carry secrets, and bodies (which may hold personal data) only
 * when the flow asks for them, and then with secret-looking fields blanked.
 */
const SENSITIVE = /pass(word)?|secret|token|authori[sz]ation|api[-_]?key|credential|cookie|session|signature|private/i;

export const REDACTED = '[redacted]';

export function isSensitiveName(name: string): boolean {
  return SENSITIVE.test(name);
}

/** Deep copy with the values of sensitive keys replaced; caps depth and array length. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 20) return '[too deep]';
  if (Array.isArray(value)) {
    const head = value.slice(0, 100).map((v) => redact(v, depth + 1));
    return value.length > 100 ? [...head, `[+${value.length - 100} more]`] : head;
  }
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>))
      out[k] = isSensitiveName(k) ? REDACTED : redact(v, depth + 1);
    return out;
  }
  return value;
}

export function redactHeaders(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[k] = isSensitiveName(k) ? REDACTED : v;
  return out;
}

/** A URL fit for a log: user info dropped, sensitive query values blanked. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    for (const k of [...u.searchParams.keys()]) if (isSensitiveName(k)) u.searchParams.set(k, REDACTED);
    return u.toString();
  } catch {
    return '[invalid url]';
  }
}

/** Stable short fingerprint of a JSON value: lets a dry run show "same output" without storing it. */
export function fingerprint(value: unknown): string {
  return createHash('sha256').update(canonical(value)).digest('hex').slice(0, 16);
}

/** JSON with object keys sorted, so equal values fingerprint equally whatever their key order. */
export function canonical(value: unknown): string {
  if (value === undefined) return 'null';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}
