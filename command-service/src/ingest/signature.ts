import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Inbound webhook signatures, the same scheme as outbound ones (API.md):
 * `Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
 * Several v1 values may be sent (during a secret rotation); one match suffices. A timestamp
 * more than `toleranceSeconds` away from now is refused, so a captured request cannot be replayed later.
 */
export const SIGNATURE_HEADER = 'keel-signature';
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function sign(secret: string, timestamp: number, rawBody: Buffer | string): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
}

export function signatureHeader(secret: string, timestamp: number, rawBody: Buffer | string): string {
  return `t=${timestamp},v1=${sign(secret, timestamp, rawBody)}`;
}

export interface ParsedSignature {
  timestamp: number;
  v1: string[];
}

export function parseSignatureHeader(header: string | undefined): ParsedSignature | undefined {
  if (!header || header.length > 2048) return undefined;
  let timestamp: number | undefined;
  const v1: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) return undefined;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't') {
      if (!/^\d{1,12}$/.test(v)) return undefined;
      timestamp = Number(v);
    } else if (k === 'v1') {
      if (!/^[0-9a-f]{64}$/i.test(v)) return undefined;
      v1.push(v.toLowerCase());
    }
  }
  return timestamp === undefined || v1.length === 0 ? undefined : { timestamp, v1 };
}

export type SignatureCheck = { ok: true; timestamp: number; signature: string } | { ok: false; reason: 'malformed' | 'expired' | 'mismatch' };

export function verifySignature(options: {
  header: string | undefined;
  secret: string;
  rawBody: Buffer;
  nowSeconds: number;
  toleranceSeconds?: number;
}): SignatureCheck {
  const parsed = parseSignatureHeader(options.header);
  if (!parsed) return { ok: false, reason: 'malformed' };
  if (Math.abs(options.nowSeconds - parsed.timestamp) > (options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS))
    return { ok: false, reason: 'expired' };
  const expected = Buffer.from(sign(options.secret, parsed.timestamp, options.rawBody), 'hex');
  const match = parsed.v1.find((v) => timingSafeEqual(Buffer.from(v, 'hex'), expected));
  return match ? { ok: true, timestamp: parsed.timestamp, signature: match } : { ok: false, reason: 'mismatch' };
}
