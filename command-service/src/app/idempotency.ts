import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Keyring } from '@keel/shared-events';

/**
 * Idempotency-Key records in PostgreSQL (table keel_idempotency), so that a retried POST gets
 * the first answer and appends nothing, also across a restart.
 *
 * `begin` reserves the key (a pending row with a lease); `complete` stores the answer;
 * `release` forgets a reservation whose request failed, so that a retry runs again. A pending
 * row whose holder died is taken over once its lease expires (keeping its `createdAt`, from
 * which ingest derives its event ids, so the rerun appends the same ids and the store drops them).
 */
export type BeginResult =
  | { kind: 'new'; createdAt: Date }
  | { kind: 'replay'; status: number; body: string; headers: Record<string, string>; requestHash: string | null }
  | { kind: 'mismatch' }
  | { kind: 'inProgress' };

export interface IdempotencyStore {
  /** `requestHash` null: a streamed body whose hash is only known at `complete`. */
  begin(scope: string, key: string, requestHash: string | null): Promise<BeginResult>;
  /** The stored hash of a finished request (for streamed bodies compared after reading them). */
  storedHash(scope: string, key: string): Promise<{ state: 'pending' | 'done'; hash: string | null } | undefined>;
  complete(
    scope: string,
    key: string,
    answer: { status: number; body: string; headers?: Record<string, string>; requestHash?: string },
  ): Promise<void>;
  release(scope: string, key: string): Promise<void>;
  /** Deletes records older than the TTL; returns how many. */
  purge(): Promise<number>;
}

export const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,255}$/;

export interface IdempotencyStoreOptions {
  pool: pg.Pool;
  keyring: Keyring;
  ttlHours: number;
  /** Default 30 s. */
  leaseSeconds?: number;
}

/** The tenant whose data key encrypts a scope's answers: scopes are `<tenantId>` or `<tenantId>:<what>`. */
export function scopeTenant(scope: string): string {
  return scope.split(':')[0]!;
}

export function createIdempotencyStore(options: IdempotencyStoreOptions): IdempotencyStore {
  const { pool, keyring } = options;
  const lease = `${options.leaseSeconds ?? 30} seconds`;
  const ttl = `${options.ttlHours} hours`;

  async function insert(scope: string, key: string, hash: string | null): Promise<Date | undefined> {
    const r = await pool.query<{ created_at: Date }>(
      `insert into keel_idempotency (scope, key, request_hash, state, locked_until)
       values ($1, $2, $3, 'pending', now() + $4::interval)
       on conflict (scope, key) do nothing returning created_at`,
      [scope, key, hash, lease],
    );
    return r.rows[0]?.created_at;
  }

  async function begin(scope: string, key: string, hash: string | null, retried = false): Promise<BeginResult> {
    const created = await insert(scope, key, hash);
    if (created) return { kind: 'new', createdAt: created };
    const r = await pool.query<{
      request_hash: string | null;
      state: 'pending' | 'done';
      status: number | null;
      response: string | null;
      expired: boolean;
      lease_over: boolean;
    }>(
      `select request_hash, state, status, response, created_at < now() - $3::interval as expired,
              locked_until < now() as lease_over
         from keel_idempotency where scope = $1 and key = $2`,
      [scope, key, ttl],
    );
    const row = r.rows[0];
    if (!row) return retried ? { kind: 'inProgress' } : begin(scope, key, hash, true);
    if (row.expired) {
      await pool.query(`delete from keel_idempotency where scope = $1 and key = $2 and created_at < now() - $3::interval`, [scope, key, ttl]);
      return retried ? { kind: 'inProgress' } : begin(scope, key, hash, true);
    }
    if (hash !== null && row.request_hash !== null && row.request_hash !== hash) return { kind: 'mismatch' };
    if (row.state === 'done') {
      const plain = JSON.parse(await keyring.decryptField(scopeTenant(scope), row.response!)) as {
        body: string;
        headers: Record<string, string>;
      };
      return { kind: 'replay', status: row.status!, body: plain.body, headers: plain.headers, requestHash: row.request_hash };
    }
    if (!row.lease_over) return { kind: 'inProgress' };
    const took = await pool.query<{ created_at: Date }>(
      `update keel_idempotency set locked_until = now() + $3::interval, request_hash = coalesce(request_hash, $4)
        where scope = $1 and key = $2 and state = 'pending' and locked_until < now() returning created_at`,
      [scope, key, lease, hash],
    );
    return took.rows[0] ? { kind: 'new', createdAt: took.rows[0].created_at } : { kind: 'inProgress' };
  }

  return {
    begin: (scope, key, hash) => begin(scope, key, hash),

    async storedHash(scope, key) {
      const r = await pool.query<{ state: 'pending' | 'done'; request_hash: string | null }>(
        `select state, request_hash from keel_idempotency where scope = $1 and key = $2 and created_at >= now() - $3::interval`,
        [scope, key, ttl],
      );
      const row = r.rows[0];
      return row ? { state: row.state, hash: row.request_hash } : undefined;
    },

    async complete(scope, key, answer) {
      const response = await keyring.encryptField(scopeTenant(scope), JSON.stringify({ body: answer.body, headers: answer.headers ?? {} }));
      await pool.query(
        `update keel_idempotency set state = 'done', status = $3, response = $4, locked_until = null,
                request_hash = coalesce($5, request_hash)
          where scope = $1 and key = $2`,
        [scope, key, answer.status, response, answer.requestHash ?? null],
      );
    },

    async release(scope, key) {
      await pool.query(`delete from keel_idempotency where scope = $1 and key = $2 and state = 'pending'`, [scope, key]);
    },

    async purge() {
      const r = await pool.query(`delete from keel_idempotency where created_at < now() - $1::interval`, [ttl]);
      return r.rowCount ?? 0;
    },
  };
}

/** sha-256 hex over the parts, each length-prefixed so that no two part lists collide. */
export function requestHash(parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    h.update(`${b.length}:`);
    h.update(b);
  }
  return h.digest('hex');
}

/**
 * A UUIDv7-shaped id derived from (reservation time, scope, key, index): the rerun of an
 * interrupted request produces the same event ids, and the store keeps the first copy only.
 */
export function idempotentEventId(createdAtMs: number, scope: string, key: string, index: number): string {
  const b = createHash('sha256').update(`${scope}\u0000${key}\u0000${index}`).digest().subarray(0, 16);
  b[0] = Math.floor(createdAtMs / 2 ** 40) & 0xff;
  b[1] = Math.floor(createdAtMs / 2 ** 32) & 0xff;
  b[2] = (createdAtMs >>> 24) & 0xff;
  b[3] = (createdAtMs >>> 16) & 0xff;
  b[4] = (createdAtMs >>> 8) & 0xff;
  b[5] = createdAtMs & 0xff;
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
