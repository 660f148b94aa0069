import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseSignatureHeader, signatureHeader, verifySignature } from '../../src/ingest/signature.ts';

const secret = 'whsec_test';
const body = Buffer.from('{"id":"evt_1"}');

describe('webhook signatures', () => {
  it('accepts the documented scheme: HMAC-SHA256 over "<t>.<raw body>"', () => {
    const t = 1_700_000_000;
    const v1 = createHmac('sha256', secret).update(`${t}.${body.toString()}`).digest('hex');
    expect(signatureHeader(secret, t, body)).toBe(`t=${t},v1=${v1}`);
    expect(verifySignature({ header: `t=${t},v1=${v1}`, secret, rawBody: body, nowSeconds: t + 10 })).toEqual({ ok: true, timestamp: t, signature: v1 });
  });

  it('accepts any one of several v1 values (secret rotation)', () => {
    const t = 1_700_000_000;
    const good = signatureHeader(secret, t, body).split(',')[1];
    const header = `t=${t},v1=${'0'.repeat(64)},${good}`;
    expect(verifySignature({ header, secret, rawBody: body, nowSeconds: t }).ok).toBe(true);
  });

  it('refuses a wrong secret, a changed body, an old or future timestamp, and malformed headers', () => {
    const t = 1_700_000_000;
    const h = signatureHeader(secret, t, body);
    expect(verifySignature({ header: h, secret: 'other', rawBody: body, nowSeconds: t })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifySignature({ header: h, secret, rawBody: Buffer.from('{"id":"evt_2"}'), nowSeconds: t })).toEqual({ ok: false, reason: 'mismatch' });
    expect(verifySignature({ header: h, secret, rawBody: body, nowSeconds: t + 301 })).toEqual({ ok: false, reason: 'expired' });
    expect(verifySignature({ header: h, secret, rawBody: body, nowSeconds: t - 301 })).toEqual({ ok: false, reason: 'expired' });
    for (const bad of [undefined, '', 'v1=abc', `t=${t}`, `t=abc,v1=${'0'.repeat(64)}`, `t=${t},v1=zz`, 'garbage'])
      expect(verifySignature({ header: bad, secret, rawBody: body, nowSeconds: t })).toEqual({ ok: false, reason: 'malformed' });
  });

  it('parses headers with spaces', () => {
    expect(parseSignatureHeader(`t=5, v1=${'A'.repeat(64)}`)).toEqual({ timestamp: 5, v1: ['a'.repeat(64)] });
  });
});
