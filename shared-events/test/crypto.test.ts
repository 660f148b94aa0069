import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authMigrations, createKeyring, loadMasterKey, masterKeyId, parseMasterKey, runMigrations, type MasterKey } from '../src/index.ts';
import { freshDatabase } from '../../test/support.ts';

let pool: pg.Pool;
const mk = (key = randomBytes(32)): MasterKey => ({ key, id: masterKeyId(key), source: 'test', generated: false });

beforeAll(async () => {
  const url = await freshDatabase('crypto');
  await runMigrations(url, [authMigrations]);
  pool = new pg.Pool({ connectionString: url, max: 5 });
});
afterAll(async () => pool?.end());

describe('keyring (per-tenant data keys, AES-256-GCM, wrapped by the master key)', () => {
  it('round-trips fields, never repeats a ciphertext, and stores only the wrapped key', async () => {
    const master = mk();
    const k = createKeyring({ pool, masterKey: master });
    const a = await k.encryptField('t1', 'hunter2 ✓');
    const b = await k.encryptField('t1', 'hunter2 ✓');
    expect(a).toMatch(/^kenc1:/);
    expect(a).not.toBe(b);
    expect(await k.decryptField('t1', a)).toBe('hunter2 ✓');
    const row = await pool.query('select wrapped_key, master_key_id from keel_data_keys where tenant_id = $1', ['t1']);
    expect(row.rows).toHaveLength(1);
    expect(row.rows[0].master_key_id).toBe(master.id);
    expect((row.rows[0].wrapped_key as Buffer).length).toBe(12 + 16 + 32);
  });

  it('binds a ciphertext to its tenant: another tenant cannot decrypt it', async () => {
    const k = createKeyring({ pool, masterKey: mk() });
    const c = await k.encryptField('tA', 'secret');
    await k.encryptField('tB', 'warm up tB key');
    await expect(k.decryptField('tB', c)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    const tampered = c.slice(0, -4) + (c.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await expect(k.decryptField('tA', tampered)).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
    await expect(k.decryptField('tA', 'plain text')).rejects.toMatchObject({ code: 'DECRYPTION_FAILED' });
  });

  it('crypto-shredding: destroying the tenant keys makes every field unreadable, for good, in every process', async () => {
    const master = mk();
    const k1 = createKeyring({ pool, masterKey: master, cacheTtlMs: 50 });
    const k2 = createKeyring({ pool, masterKey: master, cacheTtlMs: 50 }); // another process
    const tenant = 'erase-me';
    const field = await k1.encryptField(tenant, 'card 4242');
    const personal = await k1.encryptField(tenant, 'ada@example.test', { subject: 'user-1' });
    expect(await k2.decryptField(tenant, field)).toBe('card 4242');
    await k1.destroyTenantKeys(tenant);
    await expect(k1.decryptField(tenant, field)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    await expect(k1.decryptField(tenant, personal)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    await new Promise((r) => setTimeout(r, 60));
    await expect(k2.decryptField(tenant, field)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    // no new key for an erased tenant, tenant-wide or per subject
    await expect(k1.encryptField(tenant, 'x')).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    await expect(k1.encryptField(tenant, 'x', { subject: 'user-2' })).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    expect(await k1.isDestroyed(tenant)).toBe(true);
    const rows = await pool.query('select count(*)::int as n from keel_data_keys where tenant_id = $1 and wrapped_key is not null', [tenant]);
    expect(rows.rows[0].n).toBe(0);
  });

  it('a data subject can be shredded alone', async () => {
    const k = createKeyring({ pool, masterKey: mk() });
    const email = await k.encryptField('t-subj', 'bob@example.test', { subject: 'bob' });
    const other = await k.encryptField('t-subj', 'tenant secret');
    await k.destroySubjectKey('t-subj', 'bob');
    await expect(k.decryptField('t-subj', email)).rejects.toMatchObject({ code: 'KEY_DESTROYED' });
    expect(await k.decryptField('t-subj', other)).toBe('tenant secret');
  });

  it('a wrong master key fails clearly instead of producing garbage', async () => {
    const k1 = createKeyring({ pool, masterKey: mk() });
    const c = await k1.encryptField('t-master', 'x');
    const k2 = createKeyring({ pool, masterKey: mk() });
    await expect(k2.decryptField('t-master', c)).rejects.toThrow(/master key/);
  });

  it('concurrent first use of a tenant makes one key that every writer uses', async () => {
    const master = mk();
    const rings = Array.from({ length: 5 }, () => createKeyring({ pool, masterKey: master }));
    const cs = await Promise.all(rings.map((k, i) => k.encryptField('t-race', `v${i}`)));
    for (const [i, c] of cs.entries()) expect(await rings[(i + 1) % 5]!.decryptField('t-race', c)).toBe(`v${i}`);
    const rows = await pool.query("select count(*)::int as n from keel_data_keys where tenant_id = 't-race'");
    expect(rows.rows[0].n).toBe(1);
  });

  it('a burst of reads on a cold cache shares one key query', async () => {
    const master = mk();
    const c = await createKeyring({ pool, masterKey: master }).encryptField('t-burst', 'secret');
    let keyQueries = 0;
    // the real pool, with its key reads counted
    const counted = {
      query: (...args: Parameters<pg.Pool['query']>) => {
        if (String(args[0]).includes('from keel_data_keys')) keyQueries++;
        return (pool.query as (...a: unknown[]) => unknown)(...args);
      },
    } as unknown as pg.Pool;
    const cold = createKeyring({ pool: counted, masterKey: master });
    const plain = await Promise.all(Array.from({ length: 200 }, () => cold.decryptField('t-burst', c)));
    expect(new Set(plain)).toEqual(new Set(['secret']));
    expect(keyQueries).toBe(1);
  });
});

describe('master key', () => {
  it('reads KEEL_MASTER_KEY as hex or base64 and refuses anything else', () => {
    const key = randomBytes(32);
    expect(parseMasterKey(key.toString('hex'))).toEqual(key);
    expect(parseMasterKey(key.toString('base64'))).toEqual(key);
    expect(parseMasterKey(key.toString('base64url'))).toEqual(key);
    for (const bad of ['', 'short', randomBytes(16).toString('hex'), randomBytes(33).toString('base64')]) expect(() => parseMasterKey(bad)).toThrow(/32 bytes/);
    expect(loadMasterKey({ dataDir: '/nonexistent', env: { KEEL_MASTER_KEY: key.toString('hex') } })).toMatchObject({ source: 'env', generated: false });
  });

  it('generates one in the data dir (mode 0600) when unset, and keeps it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-mk-'));
    const first = loadMasterKey({ dataDir: dir, env: {} });
    expect(first.generated).toBe(true);
    const file = join(dir, 'master.key');
    expect(existsSync(file)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const second = loadMasterKey({ dataDir: dir, env: {} });
    expect(second.generated).toBe(false);
    expect(second.key).toEqual(first.key);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.key.toString('base64'));
  });
});
