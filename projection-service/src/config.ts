import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { ConfigError, envReader } from '@keel/shared-events';
import type { EnvReader, Profile } from '@keel/shared-events';
import {
  SigningKeyError,
  createAuditKeyring,
  createAuditSigner,
  generateSigningKeyPem,
  parsePrivateKey,
  parsePublicKey,
} from './audit/signing.ts';
import type { AuditKeyring, AuditSigner } from './audit/signing.ts';

/**
 * projection-service settings, from the environment, validated once at start:
 *
 * - KEEL_AUDIT_SIGNING_KEY: Ed25519 private key (PEM, or the raw 32 bytes as hex/base64) that signs
 *   audit checkpoints. In the embedded profile, when unset, one is generated and kept in
 *   `<KEEL_DATA_DIR>/audit-signing-key.pem` (mode 0600); the other profiles require it, since every
 *   projector instance must sign with the same key.
 * - KEEL_AUDIT_VERIFY_KEYS: extra public keys (PEM or raw, separated by `;`) accepted when verifying,
 *   i.e. retired signing keys after a rotation.
 * - KEEL_AUDIT_CHECKPOINT_EVERY (default 1000): a checkpoint every N rows of a tenant's chain.
 * - KEEL_AUDIT_CHECKPOINT_MINUTES (default 5): and at least every M minutes while a chain grows.
 * - KEEL_MIN_POSITION_WAIT_MS (default 5000): the longest a `minPosition` read waits.
 * - KEEL_READY_MAX_LAG (default 100000): /ready fails when a projection is further behind the store head.
 * - KEEL_REBUILD_INDEX_MEMORY_MB (default 1024): maintenance_work_mem of each of the two sessions that
 *   build a rebuilt table's indexes.
 */
export interface ProjectionConfig {
  signer: AuditSigner;
  keyring: AuditKeyring;
  checkpointEvery: number;
  checkpointMinutes: number;
  minPositionWaitMs: number;
  readyMaxLag: number;
  /** MiB of maintenance_work_mem per index-building session of a rebuild. */
  rebuildIndexMemoryMB: number;
  /** Where the signing key came from (never the key itself). */
  signingKeySource: string;
}

export const SIGNING_KEY_FILE = 'audit-signing-key.pem';

export function loadProjectionConfig(
  base: { profile: Profile; dataDir: string },
  env: NodeJS.ProcessEnv = process.env,
): ProjectionConfig {
  const r = envReader(env);
  const checkpointEvery = r.int('KEEL_AUDIT_CHECKPOINT_EVERY', 1000, 1, 10_000_000);
  const checkpointMinutes = r.int('KEEL_AUDIT_CHECKPOINT_MINUTES', 5, 1, 24 * 60);
  const minPositionWaitMs = r.int('KEEL_MIN_POSITION_WAIT_MS', 5000, 0, 60_000);
  const readyMaxLag = r.int('KEEL_READY_MAX_LAG', 100_000, 0);
  const rebuildIndexMemoryMB = readRebuildIndexMemory(r);

  let privateKey: KeyObject | undefined;
  let signingKeySource = 'KEEL_AUDIT_SIGNING_KEY';
  const keyText = r.str('KEEL_AUDIT_SIGNING_KEY');
  try {
    if (keyText) privateKey = parsePrivateKey(keyText);
    else if (base.profile === 'embedded') {
      const path = resolve(base.dataDir, SIGNING_KEY_FILE);
      privateKey = parsePrivateKey(readOrCreateKeyFile(path));
      signingKeySource = path;
    } else {
      r.problems.push(
        `KEEL_AUDIT_SIGNING_KEY is required in the ${base.profile} profile (an Ed25519 private key, PEM or 32 raw bytes)`,
      );
    }
  } catch (e) {
    if (!(e instanceof SigningKeyError)) throw e;
    r.problems.push(`KEEL_AUDIT_SIGNING_KEY: ${e.message}`);
  }

  const verifyKeys: KeyObject[] = [];
  for (const text of (r.str('KEEL_AUDIT_VERIFY_KEYS') ?? '')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    try {
      verifyKeys.push(parsePublicKey(text));
    } catch (e) {
      r.problems.push(`KEEL_AUDIT_VERIFY_KEYS: ${(e as Error).message}`);
    }
  }
  if (r.problems.length || !privateKey) throw new ConfigError(r.problems);
  const signer = createAuditSigner(privateKey);
  return {
    signer,
    keyring: createAuditKeyring([signer.publicKey, ...verifyKeys]),
    checkpointEvery,
    checkpointMinutes,
    minPositionWaitMs,
    readyMaxLag,
    rebuildIndexMemoryMB,
    signingKeySource,
  };
}

function readOrCreateKeyFile(path: string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8');
  mkdirSync(dirname(path), { recursive: true });
  const pem = generateSigningKeyPem();
  try {
    // 'wx': two processes starting at once must not both write (and then disagree on) the key.
    writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
    return pem;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(path, 'utf8');
    throw e;
  }
}

/** KEEL_REBUILD_INDEX_MEMORY_MB, in MiB: 64-16384, default 1024. */
const readRebuildIndexMemory = (r: EnvReader) => r.int('KEEL_REBUILD_INDEX_MEMORY_MB', 1024, 64, 16_384);

/**
 * KEEL_REBUILD_INDEX_MEMORY_MB alone, for callers without a ProjectionConfig (the CLI). Index builds
 * that fit their sort in memory skip the merge passes on disk: at 5.5M audit rows, key + five
 * indexes on two sessions took 36.3 s with 512 MB each and 31.4 s with 1.5 GB (this project's 2-core VM).
 */
export function rebuildIndexMemoryMB(env: NodeJS.ProcessEnv = process.env): number {
  const r = envReader(env);
  const mb = readRebuildIndexMemory(r);
  if (r.problems.length) throw new ConfigError(r.problems);
  return mb;
}
