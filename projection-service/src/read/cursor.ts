import { createHash } from 'node:crypto';
import { ValidationError, canonicalJson } from '@keel/shared-events';

/**
 * Keyset cursors (no OFFSET): the sort key of the last item of a page, plus a fingerprint of the
 * filters it was made for. A cursor is opaque text (base64url JSON) and is bound to its filters,
 * so reusing it with other filters is refused instead of silently skipping rows. It carries no
 * tenant: the tenant always comes from the route and is enforced by the query and by RLS, so a
 * forged cursor can only move within the caller's own rows.
 */
export type KeyPart = 'int' | 'string';

const MAX_CURSOR_LENGTH = 512;

export function filterFingerprint(scope: string, filters: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson({ scope, filters })).digest('base64url').slice(0, 12);
}

export function encodeCursor(key: (number | string)[], fingerprint: string): string {
  return Buffer.from(JSON.stringify({ k: key, f: fingerprint }), 'utf8').toString('base64url');
}

export function decodeCursor(text: string, fingerprint: string, shape: readonly KeyPart[]): (number | string)[] {
  const bad = (why: string): never => {
    throw new ValidationError(`malformed cursor: ${why}`, 'cursor');
  };
  if (text.length === 0 || text.length > MAX_CURSOR_LENGTH) bad('wrong length');
  if (!/^[A-Za-z0-9_-]+$/.test(text)) bad('not base64url');
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return bad('not a cursor');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return bad('not a cursor');
  const { k, f } = parsed as { k?: unknown; f?: unknown };
  if (typeof f !== 'string') return bad('not a cursor');
  if (f !== fingerprint) {
    throw new ValidationError('cursor was issued for other filters; start again without a cursor', 'cursor');
  }
  if (!Array.isArray(k) || k.length !== shape.length) return bad('wrong key');
  k.forEach((v, i) => {
    if (shape[i] === 'int' && !(Number.isSafeInteger(v) && (v as number) >= 0)) bad('wrong key');
    if (shape[i] === 'string' && !(typeof v === 'string' && v.length <= 200)) bad('wrong key');
  });
  return k as (number | string)[];
}
