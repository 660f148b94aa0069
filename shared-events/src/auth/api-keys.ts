import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Tenant API keys: `keel_<id>_<secret>`. The id (20 hex) is public and indexes the key; the
 * secret (48 hex, 192 bits) is shown once and stored only as a scrypt hash, so a leaked
 * database does not yield usable keys.
 */
export const API_KEY_RE = /^keel_([0-9a-f]{20})_([0-9a-f]{48})$/;
export const KEY_ID_RE = /^[0-9a-f]{20}$/;

export interface IssuedSecret {
  keyId: string;
  /** The full key to hand to the caller, once. */
  apiKey: string;
  secret: string;
}

export function newApiKey(keyId: string = randomBytes(10).toString('hex')): IssuedSecret {
  const secret = randomBytes(24).toString('hex');
  return { keyId, secret, apiKey: `keel_${keyId}_${secret}` };
}

export function parseApiKey(token: string): { keyId: string; secret: string } | undefined {
  const m = API_KEY_RE.exec(token);
  return m ? { keyId: m[1]!, secret: m[2]! } : undefined;
}

// N=2^14, r=8: ~16 MiB and tens of ms per hash; verification results are cached per process,
// so the cost is paid once per key and process, not per request.
const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 };

function scrypt(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(secret, salt, keylen, { ...opts, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** `scrypt$N$r$p$<salt b64>$<hash b64>`. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0)) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  const actual = await scrypt(secret, salt, expected.length, { N, r, p });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Constant-time equality of two strings of any length (compares their digests). */
export function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}
