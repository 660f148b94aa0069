import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@keel/shared-events';
import {
  createAuditKeyring,
  createAuditSigner,
  keyIdOf,
  parsePrivateKey,
  parsePublicKey,
  publicKeyPem,
  SigningKeyError,
} from '../src/audit/signing.ts';
import { loadProjectionConfig, rebuildIndexMemoryMB } from '../src/config.ts';

describe('audit signing keys', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const rawSeed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);

  it('are read as PEM, hex or base64 raw bytes, all naming the same key', () => {
    const ids = [pem, rawSeed.toString('hex'), rawSeed.toString('base64'), rawSeed.toString('base64url')].map(
      (text) => createAuditSigner(parsePrivateKey(text)).keyId,
    );
    expect(new Set(ids).size).toBe(1);
    expect(ids[0]).toBe(keyIdOf(publicKey));
    const rawPublic = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    expect(keyIdOf(parsePublicKey(rawPublic.toString('hex')))).toBe(ids[0]);
    expect(keyIdOf(parsePublicKey(publicKeyPem(publicKey)))).toBe(ids[0]);
  });

  it('refuse junk and keys of another algorithm', () => {
    expect(() => parsePrivateKey('not a key')).toThrow(SigningKeyError);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    expect(() => parsePrivateKey(rsa)).toThrow(/must be Ed25519/);
  });

  it('sign what the keyring verifies, and nothing else', () => {
    const signer = createAuditSigner(privateKey);
    const keyring = createAuditKeyring([signer.publicKey]);
    const sig = signer.sign('hello');
    expect(keyring.verify(signer.keyId, 'hello', sig)).toBe(true);
    expect(keyring.verify(signer.keyId, 'hello!', sig)).toBe(false);
    expect(keyring.verify('0000000000000000', 'hello', sig)).toBe(false);
    expect(keyring.verify(signer.keyId, 'hello', Buffer.alloc(3))).toBe(false);
  });
});

describe('projection config', () => {
  it('requires a signing key outside the embedded profile and names the problem', () => {
    expect(() => loadProjectionConfig({ profile: 'postgres', dataDir: '/nonexistent' }, {})).toThrow(ConfigError);
    expect(() =>
      loadProjectionConfig({ profile: 'postgres', dataDir: '/x' }, { KEEL_AUDIT_SIGNING_KEY: 'abc' }),
    ).toThrow(/KEEL_AUDIT_SIGNING_KEY/);
    expect(() =>
      loadProjectionConfig(
        { profile: 'postgres', dataDir: '/x' },
        { KEEL_AUDIT_SIGNING_KEY: 'a'.repeat(64), KEEL_AUDIT_CHECKPOINT_EVERY: '0' },
      ),
    ).toThrow(/KEEL_AUDIT_CHECKPOINT_EVERY/);
  });

  it('takes the rebuild index memory from KEEL_REBUILD_INDEX_MEMORY_MB and refuses a bad value', () => {
    const base = { profile: 'postgres' as const, dataDir: '/x' };
    const key = { KEEL_AUDIT_SIGNING_KEY: 'a'.repeat(64) };
    expect(loadProjectionConfig(base, key).rebuildIndexMemoryMB).toBe(1024);
    expect(loadProjectionConfig(base, { ...key, KEEL_REBUILD_INDEX_MEMORY_MB: '256' }).rebuildIndexMemoryMB).toBe(256);
    for (const bad of ['32', '1.5', 'lots', '100000']) {
      expect(() => loadProjectionConfig(base, { ...key, KEEL_REBUILD_INDEX_MEMORY_MB: bad })).toThrow(
        /KEEL_REBUILD_INDEX_MEMORY_MB/,
      );
      expect(() => rebuildIndexMemoryMB({ KEEL_REBUILD_INDEX_MEMORY_MB: bad })).toThrow(/KEEL_REBUILD_INDEX_MEMORY_MB/);
    }
    expect(rebuildIndexMemoryMB({})).toBe(1024);
    expect(rebuildIndexMemoryMB({ KEEL_REBUILD_INDEX_MEMORY_MB: '2048' })).toBe(2048);
  });

  it('accepts retired public keys for verification', () => {
    const old = generateKeyPairSync('ed25519');
    const cfg = loadProjectionConfig(
      { profile: 'kafka', dataDir: '/x' },
      { KEEL_AUDIT_SIGNING_KEY: 'b'.repeat(64), KEEL_AUDIT_VERIFY_KEYS: publicKeyPem(old.publicKey) },
    );
    expect(cfg.keyring.keyIds()).toHaveLength(2);
    expect(cfg.keyring.keyIds()).toContain(keyIdOf(old.publicKey));
    expect(cfg.checkpointEvery).toBe(1000);
    expect(cfg.minPositionWaitMs).toBe(5000);
  });
});
