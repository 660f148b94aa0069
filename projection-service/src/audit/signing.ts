import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/**
 * Ed25519 keys for the audit trail's signed checkpoints. A checkpoint signs (tenant, seq,
 * position, chain hash, time): whoever can rewrite rows in the database can recompute the hash
 * chain too, but cannot forge the signature without the private key, which lives only in the
 * projector's configuration.
 *
 * Keys are accepted as PEM (PKCS#8 private / SPKI public) or as the raw 32-byte key in base64 or
 * hex, because operators keep them in environment variables and secret stores.
 */
export interface AuditSigner {
  keyId: string;
  publicKey: KeyObject;
  sign(message: string): Buffer;
}

export interface AuditKeyring {
  /** Verifies with the key named by `keyId`; false for an unknown key id. */
  verify(keyId: string, message: string, signature: Buffer): boolean;
  keyIds(): string[];
}

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export class SigningKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SigningKeyError';
  }
}

function rawBytes(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-f]{64}$/i.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === 32) return b;
  }
  return undefined;
}

export function parsePrivateKey(text: string): KeyObject {
  const raw = rawBytes(text);
  let key: KeyObject;
  try {
    key = raw
      ? createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, raw]), format: 'der', type: 'pkcs8' })
      : createPrivateKey(text.includes('-----BEGIN') ? text : Buffer.from(text, 'base64').toString('utf8'));
  } catch (e) {
    throw new SigningKeyError(
      `audit signing key is neither a PEM Ed25519 private key nor 32 raw bytes: ${(e as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SigningKeyError(`audit signing key must be Ed25519, got ${key.asymmetricKeyType}`);
  return key;
}

export function parsePublicKey(text: string): KeyObject {
  const raw = rawBytes(text);
  let key: KeyObject;
  try {
    key = raw
      ? createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' })
      : createPublicKey(text);
  } catch (e) {
    throw new SigningKeyError(
      `audit verification key is neither a PEM Ed25519 public key nor 32 raw bytes: ${(e as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SigningKeyError(`audit verification key must be Ed25519, got ${key.asymmetricKeyType}`);
  return key;
}

/** A short stable name for a public key: the first 16 hex digits of SHA-256 over its raw bytes. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return createHash('sha256').update(der.subarray(SPKI_ED25519_PREFIX.length)).digest('hex').slice(0, 16);
}

export function createAuditSigner(privateKey: KeyObject): AuditSigner {
  const publicKey = createPublicKey(privateKey);
  return {
    keyId: keyIdOf(publicKey),
    publicKey,
    sign: (message) => sign(null, Buffer.from(message, 'utf8'), privateKey),
  };
}

export function createAuditKeyring(publicKeys: KeyObject[]): AuditKeyring {
  const byId = new Map(publicKeys.map((k) => [keyIdOf(k), k] as const));
  return {
    verify: (keyId, message, signature) => {
      const key = byId.get(keyId);
      if (!key) return false;
      try {
        return verify(null, Buffer.from(message, 'utf8'), key, signature);
      } catch {
        return false;
      }
    },
    keyIds: () => [...byId.keys()],
  };
}

export function generateSigningKeyPem(): string {
  const { privateKey } = generateKeyPairSync('ed25519');
  return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

export function publicKeyPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'spki' }).toString();
}
