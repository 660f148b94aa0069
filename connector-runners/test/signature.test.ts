import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signatureHeader, verifySignature } from '../src/webhooks/signature.ts';

describe('webhook signatures', () => {
  const secret = 'whsec_test';
  const body = '{"eventId":"e1","type":"RecordIngested"}';

  it('follows the documented formula: t=<unix>,v1=hex HMAC-SHA256(secret, "<t>.<raw body>")', () => {
    const header = signatureHeader(secret, body, 1714564800);
    const expected = createHmac('sha256', secret).update(`1714564800.${body}`).digest('hex');
    expect(header).toBe(`t=1714564800,v1=${expected}`);
  });

  it('verifies its own signatures and rejects a changed body, a wrong secret, a stale timestamp', () => {
    const now = 1714564800_000;
    const h = signatureHeader(secret, body, 1714564800);
    expect(verifySignature(secret, body, h, { now })).toEqual({ ok: true, timestamp: 1714564800 });
    expect(verifySignature(secret, `${body} `, h, { now })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifySignature('other', body, h, { now })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifySignature(secret, body, h, { now: now + 301_000 })).toEqual({ ok: false, reason: 'stale' });
    expect(verifySignature(secret, body, h, { now: now + 301_000, toleranceSec: 600 }).ok).toBe(true);
  });

  it('accepts any of several v1 values (secret rotation) and refuses malformed headers', () => {
    const now = 1714564800_000;
    const good = signatureHeader(secret, body, 1714564800).split('v1=')[1]!;
    expect(verifySignature(secret, body, `t=1714564800,v1=${'0'.repeat(64)},v1=${good}`, { now }).ok).toBe(true);
    for (const bad of [
      undefined,
      '',
      't=abc,v1=00',
      `v1=${good}`,
      't=1714564800',
      `t=1714564800,v1=${good.slice(2)}`,
      'garbage',
    ])
      expect(verifySignature(secret, body, bad, { now })).toEqual({ ok: false, reason: 'malformed' });
  });
});
