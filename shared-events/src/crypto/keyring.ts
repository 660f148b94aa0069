import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { KeelError } from '../errors.ts';
import { open, seal } from './aead.ts';
import type { MasterKey } from './master-key.ts';

/**
 * Per-tenant data keys (and per data subject, e.g. one user's personal fields), AES-256-GCM,
 * stored wrapped by the master key in `keel_data_keys`. Fields are encrypted with the data key;
 * destroying the key (crypto-shredding) makes every ciphertext made with it unreadable for good,
 * while the events holding them stay in the log untouched.
 *
 * Field ciphertext format: `kenc1:<subject, base64url>:<nonce ‖ tag ‖ ciphertext, base64url>`.
 * The subject travels with the ciphertext so `decryptField` needs only the tenant.
 */
export const FIELD_PREFIX = 'kenc1:';

/** The data key was destroyed (tenant or subject erased): the plaintext is gone for good. */
export class KeyDestroyedError extends KeelError {
  readonly code = 'KEY_DESTROYED';
  constructor(readonly tenantId: string, readonly subject: string) {
    super(subject ? `the data key of this subject was destroyed` : `the data key of tenant ${tenantId} was destroyed`, {
      tenantId,
    });
  }
}

/** The ciphertext is malformed, of another tenant, or the master key is not the one that wrapped the data key. */
export class DecryptionError extends KeelError {
  readonly code = 'DECRYPTION_FAILED';
}

export interface FieldOptions {
  /** A data subject (e.g. a user id) with its own key, destroyable alone. Default: the tenant-wide key. */
  subject?: string;
}

export interface Keyring {
  encryptField(tenantId: string, plaintext: string, options?: FieldOptions): Promise<string>;
  decryptField(tenantId: string, ciphertext: string): Promise<string>;
  /** Destroys every data key of the tenant (tenant-wide and per subject). Idempotent. */
  destroyTenantKeys(tenantId: string): Promise<void>;
  /** Destroys one subject's key (erasure of a data subject). Idempotent. */
  destroySubjectKey(tenantId: string, subject: string): Promise<void>;
  /** Whether the tenant-wide (or subject) key was destroyed. */
  isDestroyed(tenantId: string, subject?: string): Promise<boolean>;
}

export interface KeyringOptions {
  pool: pg.Pool;
  masterKey: MasterKey;
  /**
   * How long an unwrapped data key is reused before the row is read again. Bounds how long
   * another process keeps decrypting after a key was destroyed. Default 1000 ms.
   */
  cacheTtlMs?: number;
}

export function isEncryptedField(value: unknown): value is string {
  return typeof value === 'string' && value.startsWith(FIELD_PREFIX);
}

function aadOf(tenantId: string, subject: string, purpose: 'key' | 'field'): Buffer {
  return Buffer.from(`keel/${purpose}\u0000${tenantId}\u0000${subject}`, 'utf8');
}

export function createKeyring(options: KeyringOptions): Keyring {
  const { pool, masterKey } = options;
  const ttl = options.cacheTtlMs ?? 1000;
  const cache = new Map<string, { key: Buffer | null; at: number }>();
  const cacheKey = (tenantId: string, subject: string) => `${tenantId}\u0000${subject}`;

  function unwrap(tenantId: string, subject: string, row: { wrapped_key: Buffer | null; master_key_id: string }): Buffer | null {
    if (row.wrapped_key === null) return null;
    if (row.master_key_id !== masterKey.id)
      throw new DecryptionError(
        `the data key of tenant ${tenantId} was wrapped by master key ${row.master_key_id}, but the configured master key is ${masterKey.id}`,
      );
    return open(masterKey.key, row.wrapped_key, aadOf(tenantId, subject, 'key'));
  }

  // One read per key at a time: a burst of callers that all miss the cache (a runner starting 500
  // deliveries of one tenant at once) shares it instead of sending 500 identical queries.
  const reading = new Map<string, Promise<Buffer | null | undefined>>();
  function readKey(tenantId: string, subject: string): Promise<Buffer | null | undefined> {
    const ck = cacheKey(tenantId, subject);
    let p = reading.get(ck);
    if (!p) {
      p = queryKey(tenantId, subject).finally(() => reading.delete(ck));
      reading.set(ck, p);
    }
    return p;
  }

  async function queryKey(tenantId: string, subject: string): Promise<Buffer | null | undefined> {
    const r = await pool.query<{ wrapped_key: Buffer | null; master_key_id: string }>(
      'select wrapped_key, master_key_id from keel_data_keys where tenant_id = $1 and subject_id = $2',
      [tenantId, subject],
    );
    const row = r.rows[0];
    return row ? unwrap(tenantId, subject, row) : undefined;
  }

  /** The data key, created on first use; null when destroyed. */
  async function dataKey(tenantId: string, subject: string, create: boolean): Promise<Buffer | null | undefined> {
    const ck = cacheKey(tenantId, subject);
    const hit = cache.get(ck);
    if (hit && Date.now() - hit.at < ttl) return hit.key;
    let key = await readKey(tenantId, subject);
    if (key === undefined && create) {
      const fresh = randomBytes(32);
      // Two writers may race on the first key of a tenant: the first insert wins, both use it.
      await pool.query(
        `insert into keel_data_keys (tenant_id, subject_id, wrapped_key, master_key_id) values ($1, $2, $3, $4)
         on conflict (tenant_id, subject_id) do nothing`,
        [tenantId, subject, seal(masterKey.key, fresh, aadOf(tenantId, subject, 'key')), masterKey.id],
      );
      key = await queryKey(tenantId, subject); // not a shared read that may have started before the insert
    }
    if (key !== undefined) cache.set(ck, { key, at: Date.now() });
    return key;
  }

  return {
    async encryptField(tenantId, plaintext, opts = {}) {
      const subject = opts.subject ?? '';
      // An erased tenant gets no new subject keys either.
      if (subject && !(await dataKey(tenantId, '', true))) throw new KeyDestroyedError(tenantId, '');
      const key = await dataKey(tenantId, subject, true);
      if (!key) throw new KeyDestroyedError(tenantId, subject);
      const sealed = seal(key, Buffer.from(plaintext, 'utf8'), aadOf(tenantId, subject, 'field'));
      return `${FIELD_PREFIX}${Buffer.from(subject, 'utf8').toString('base64url')}:${sealed.toString('base64url')}`;
    },

    async decryptField(tenantId, ciphertext) {
      if (!isEncryptedField(ciphertext)) throw new DecryptionError('not an encrypted field');
      const rest = ciphertext.slice(FIELD_PREFIX.length);
      const colon = rest.indexOf(':');
      if (colon < 0) throw new DecryptionError('malformed encrypted field');
      const subject = Buffer.from(rest.slice(0, colon), 'base64url').toString('utf8');
      const key = await dataKey(tenantId, subject, false);
      if (key === undefined) throw new DecryptionError(`tenant ${tenantId} has no data key for this field`);
      if (key === null) throw new KeyDestroyedError(tenantId, subject);
      try {
        return open(key, Buffer.from(rest.slice(colon + 1), 'base64url'), aadOf(tenantId, subject, 'field')).toString('utf8');
      } catch {
        throw new DecryptionError('the field cannot be decrypted with this tenant\'s key');
      }
    },

    async destroyTenantKeys(tenantId) {
      // Destroy the tenant-wide key even if none was ever made, so none can be made later.
      await pool.query(
        `insert into keel_data_keys (tenant_id, subject_id, wrapped_key, master_key_id, destroyed_at)
         values ($1, '', null, $2, now())
         on conflict (tenant_id, subject_id) do nothing`,
        [tenantId, masterKey.id],
      );
      await pool.query(
        'update keel_data_keys set wrapped_key = null, destroyed_at = coalesce(destroyed_at, now()) where tenant_id = $1',
        [tenantId],
      );
      for (const k of cache.keys()) if (k.startsWith(`${tenantId}\u0000`)) cache.delete(k);
    },

    async destroySubjectKey(tenantId, subject) {
      if (!subject) throw new Error('destroySubjectKey needs a subject; use destroyTenantKeys for the tenant');
      await pool.query(
        `insert into keel_data_keys (tenant_id, subject_id, wrapped_key, master_key_id, destroyed_at)
         values ($1, $2, null, $3, now())
         on conflict (tenant_id, subject_id) do update set wrapped_key = null, destroyed_at = coalesce(keel_data_keys.destroyed_at, now())`,
        [tenantId, subject, masterKey.id],
      );
      cache.delete(cacheKey(tenantId, subject));
    },

    async isDestroyed(tenantId, subject = '') {
      const r = await pool.query<{ destroyed: boolean }>(
        `select bool_or(destroyed_at is not null) as destroyed from keel_data_keys
         where tenant_id = $1 and (subject_id = $2 or subject_id = '')`,
        [tenantId, subject],
      );
      return r.rows[0]?.destroyed === true;
    },
  };
}
