/** The lease + checkpoint row behind the relay and the PostgreSQL bus, against a real PostgreSQL. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busMigrations, createLease, readCheckpoint, runMigrations } from '@keel/shared-events';
import { freshDatabase } from '../../test/support.ts';

describe('lease', () => {
  let pool: pg.Pool;
  beforeAll(async () => {
    const url = await freshDatabase('lease');
    await runMigrations(url, [busMigrations]);
    pool = new pg.Pool({ connectionString: url, max: 4 });
  });
  afterAll(async () => pool?.end());

  it('is held by one holder at a time and carries the checkpoint', async () => {
    const a = createLease({ pool, name: 'relay:x', holder: 'a', ttlMs: 5_000 });
    const b = createLease({ pool, name: 'relay:x', holder: 'b', ttlMs: 5_000 });
    expect(await a.tryAcquire()).toEqual({ position: 0, fencing: 1 });
    expect(await b.tryAcquire()).toBeUndefined();
    expect(await a.checkpoint(42)).toBe(true);
    expect(await readCheckpoint(pool, 'relay:x')).toMatchObject({ position: 42, holder: 'a' });
    await a.release();
    expect(await b.tryAcquire()).toEqual({ position: 42, fencing: 2 });
    await b.release();
  });

  it('expires when its holder stops renewing (dies), and a standby takes over with the checkpoint', async () => {
    // What a SIGKILLed holder leaves behind: its row, with a lease that nobody renews any more.
    await pool.query(
      `insert into keel_bus_checkpoints (name, position, holder, fencing, lease_expires_at)
       values ('relay:y', 7, 'dead', 3, now() + interval '400 milliseconds')`,
    );
    const standby = createLease({ pool, name: 'relay:y', holder: 'standby', ttlMs: 300 });
    expect(await standby.tryAcquire()).toBeUndefined(); // not expired yet
    const state = await standby.acquire();
    expect(state).toEqual({ position: 7, fencing: 4 });
    expect(await readCheckpoint(pool, 'relay:y')).toMatchObject({ holder: 'standby' });
    await standby.release();
  });

  it('fences a holder that lost the lease: its checkpoint writes are refused', async () => {
    let lostReason = '';
    const old = createLease({ pool, name: 'relay:z', holder: 'old', ttlMs: 60_000, onLost: (r) => (lostReason = r) });
    await old.tryAcquire();
    await old.checkpoint(100);
    // Another holder takes over (e.g. after `old` was paused past its expiry).
    await pool.query(
      `update keel_bus_checkpoints set lease_expires_at = now() - interval '1 second' where name = 'relay:z'`,
    );
    const fresh = createLease({ pool, name: 'relay:z', holder: 'new', ttlMs: 60_000 });
    expect(await fresh.tryAcquire()).toEqual({ position: 100, fencing: 2 });
    expect(await fresh.checkpoint(150)).toBe(true);
    expect(await old.checkpoint(999)).toBe(false);
    expect(old.isHeld()).toBe(false);
    expect(lostReason).toMatch(/taken over/);
    expect((await readCheckpoint(pool, 'relay:z'))?.position).toBe(150);
    await fresh.release();
  });

  it('acquire() gives up when aborted', async () => {
    const holder = createLease({ pool, name: 'relay:w', holder: 'h', ttlMs: 60_000 });
    await holder.tryAcquire();
    const waiting = createLease({ pool, name: 'relay:w', holder: 'w', ttlMs: 60_000 });
    const ac = new AbortController();
    const p = waiting.acquire(ac.signal);
    setTimeout(() => ac.abort(), 200);
    expect(await p).toBeUndefined();
    await holder.release();
  });
});
