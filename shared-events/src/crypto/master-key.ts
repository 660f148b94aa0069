import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The master key wraps every tenant's data key. It comes from KEEL_MASTER_KEY (32 bytes as
 * base64 or hex); when unset, one is generated on first start and kept in the data directory
 * (mode 0600), like the platform admin key, so a laptop `keel dev` needs no setup.
 */
export interface MasterKey {
  key: Buffer;
  /** First 16 hex chars of sha-256(key): recorded beside each wrapped key to detect a wrong master key. */
  id: string;
  /** 'env' or the file it was read from / written to. */
  source: string;
  /** True when this call generated it. */
  generated: boolean;
}

export const MASTER_KEY_FILE = 'master.key';

export function parseMasterKey(text: string): Buffer {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t)
    ? Buffer.from(t, 'hex')
    : /^[A-Za-z0-9+/_-]{43}=?$/.test(t)
      ? Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
      : Buffer.alloc(0);
  if (key.length !== 32) throw new Error('KEEL_MASTER_KEY must be 32 bytes, written as 64 hex characters or 44 base64 characters');
  return key;
}

export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

export function loadMasterKey(options: { dataDir: string; env?: NodeJS.ProcessEnv }): MasterKey {
  const env = options.env ?? process.env;
  const fromEnv = env.KEEL_MASTER_KEY;
  if (fromEnv) {
    const key = parseMasterKey(fromEnv);
    return { key, id: masterKeyId(key), source: 'env', generated: false };
  }
  const path = resolve(options.dataDir, MASTER_KEY_FILE);
  const { text, generated } = readOrCreateSecretFile(path, () => randomBytes(32).toString('base64'));
  const key = parseMasterKey(text);
  return { key, id: masterKeyId(key), source: path, generated };
}

/**
 * Reads a secret file, or creates it exclusively (`wx`): when two processes start at once on
 * the same data directory, one wins and the other reads the winner's secret.
 */
export function readOrCreateSecretFile(path: string, make: () => string): { text: string; generated: boolean } {
  try {
    return { text: readFileSync(path, 'utf8').trim(), generated: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  mkdirSync(resolve(path, '..'), { recursive: true });
  const text = make();
  try {
    writeFileSync(path, text + '\n', { flag: 'wx', mode: 0o600 });
    chmodSync(path, 0o600);
    return { text, generated: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return { text: readFileSync(path, 'utf8').trim(), generated: false };
  }
}
