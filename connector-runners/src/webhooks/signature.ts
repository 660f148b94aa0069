import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Outbound webhook signatures (API.md): `Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
 * The timestamp is inside the signed text so a captured request cannot be replayed later with a
 * new timestamp; receivers check it is recent.
 */
export const SIGNATURE_HEADER = 'Keel-Signature';

export function computeSignature(secret: string | Buffer, timestamp: number, rawBody: string | Buffer): string {
  const h = createHmac('sha256', secret);
  h.update(typeof rawBody === 'string' ? `${timestamp}.${rawBody}` : Buffer.concat([Buffer.from(`${timestamp}.`), rawBody]));
  return h.digest('hex');
}

export function signatureHeader(
  secret: string | Buffer,
  rawBody: string | Buffer,
  timestamp = Math.floor(Date.now() / 1000),
): string {
  return `t=${timestamp},v1=${computeSignature(secret, timestamp, rawBody)}`;
}

export type VerifyResult = { ok: true; timestamp: number } | { ok: false; reason: 'malformed' | 'stale' | 'mismatch' };

/**
 * What a receiver runs. Accepts several `v1=` values (a sender rotating secrets may send two) and
 * compares in constant time. `toleranceSec` bounds the age of the timestamp (replay protection).
 */
export function verifySignature(
  secret: string | Buffer,
  rawBody: string | Buffer,
  header: string | undefined,
  options: { toleranceSec?: number; now?: number } = {},
): VerifyResult {
  if (!header) return { ok: false, reason: 'malformed' };
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, reason: 'malformed' };
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't') {
      if (!/^\d{1,12}$/.test(v)) return { ok: false, reason: 'malformed' };
      timestamp = Number(v);
    } else if (k === 'v1') {
      if (!/^[0-9a-f]{64}$/.test(v)) return { ok: false, reason: 'malformed' };
      signatures.push(v);
    }
  }
  if (timestamp === undefined || signatures.length === 0) return { ok: false, reason: 'malformed' };
  const tolerance = options.toleranceSec ?? 300;
  const nowSec = Math.floor((options.now ?? Date.now()) / 1000);
  if (Math.abs(nowSec - timestamp) > tolerance) return { ok: false, reason: 'stale' };
  const expected = Buffer.from(computeSignature(secret, timestamp, rawBody), 'hex');
  const match = signatures.some((s) => timingSafeEqual(Buffer.from(s, 'hex'), expected));
  return match ? { ok: true, timestamp } : { ok: false, reason: 'mismatch' };
}
