import type pg from 'pg';
import type { Logger } from 'pino';
import type { RecordedEvent } from '../envelope.ts';
import type { EventStore, Subscription } from '../store/port.ts';

/**
 * The auth tables (keel_auth_*) as an inline projection of tenant-* and access-* events.
 * The writer applies its own events right after appending them (so a new key works at once and
 * a revocation bites at once); a catch-up subscription applies everything else (other writer
 * processes, a crash between append and apply, a rebuild). Applying is idempotent and
 * order-safe: a row remembers the position of the last event applied to it, and an older event
 * never overwrites a newer one.
 */
export const AUTH_CATEGORIES = ['tenant', 'access'] as const;

type Queryable = Pick<pg.PoolClient, 'query'>;

export async function applyAuthEvents(db: Queryable, events: readonly RecordedEvent[]): Promise<void> {
  for (const e of events) {
    const d = e.data as Record<string, unknown>;
    const pos = e.globalPosition;
    switch (e.type) {
      case 'TenantCreated':
        await db.query(
          `insert into keel_auth_tenants (tenant_id, name, status, position, created_at) values ($1, $2, 'active', $3, $4)
           on conflict (tenant_id) do nothing`,
          [e.tenantId, d.name, pos, e.recordedAt],
        );
        break;
      case 'TenantSuspended':
      case 'TenantReinstated':
        await db.query(
          `update keel_auth_tenants set status = $2, position = $3, updated_at = now()
            where tenant_id = $1 and position < $3 and status <> 'erased'`,
          [e.tenantId, e.type === 'TenantSuspended' ? 'suspended' : 'active', pos],
        );
        break;
      case 'TenantErased':
        await db.query(
          `update keel_auth_tenants set status = 'erased', position = greatest(position, $2), updated_at = now() where tenant_id = $1`,
          [e.tenantId, pos],
        );
        await db.query('update keel_auth_api_keys set revoked_at = coalesce(revoked_at, $2) where tenant_id = $1', [
          e.tenantId,
          e.recordedAt,
        ]);
        await db.query('update keel_auth_user_roles set granted = false, position = greatest(position, $2) where tenant_id = $1', [
          e.tenantId,
          pos,
        ]);
        // Crypto-shredding: the writer destroys the keys through the keyring; doing it here as
        // well makes the erasure hold even when the writer died right after appending.
        await db.query(
          `insert into keel_data_keys (tenant_id, subject_id, wrapped_key, master_key_id, destroyed_at) values ($1, '', null, '', now())
           on conflict (tenant_id, subject_id) do nothing`,
          [e.tenantId],
        );
        await db.query(
          'update keel_data_keys set wrapped_key = null, destroyed_at = coalesce(destroyed_at, now()) where tenant_id = $1',
          [e.tenantId],
        );
        break;
      case 'ApiKeyIssued':
        await db.query(
          `insert into keel_auth_api_keys (key_id, tenant_id, name, role, secret_hash, created_at, position)
           values ($1, $2, $3, $4, $5, $6, $7) on conflict (key_id) do nothing`,
          [d.keyId, e.tenantId, d.name, d.role, d.secretHash, e.recordedAt, pos],
        );
        break;
      case 'ApiKeyRevoked':
        // Fail closed: a revocation seen before its issue leaves a revoked placeholder that the issue cannot reopen.
        await db.query(
          `insert into keel_auth_api_keys (key_id, tenant_id, name, role, secret_hash, created_at, revoked_at, position)
           values ($1, $2, '', 'viewer', '!', $3, $3, $4)
           on conflict (key_id) do update set revoked_at = coalesce(keel_auth_api_keys.revoked_at, excluded.revoked_at)`,
          [d.keyId, e.tenantId, e.recordedAt, pos],
        );
        break;
      case 'UserInvited':
      case 'RoleGranted':
      case 'RoleRevoked':
        await db.query(
          `insert into keel_auth_user_roles (tenant_id, user_id, role, granted, position) values ($1, $2, $3, $4, $5)
           on conflict (tenant_id, user_id, role) do update set granted = excluded.granted, position = excluded.position
           where keel_auth_user_roles.position < excluded.position`,
          [e.tenantId, d.userId, d.role, e.type !== 'RoleRevoked', pos],
        );
        break;
      default:
        break;
    }
  }
}

/** Applies in one transaction (all or nothing), optionally moving a checkpoint with it. */
export async function applyAuthEventsInTransaction(
  pool: pg.Pool,
  events: readonly RecordedEvent[],
  checkpoint?: { name: string; position: number },
): Promise<void> {
  const relevant = events.filter((e) => e.type !== 'AccessDenied');
  if (!relevant.length && !checkpoint) return;
  const c = await pool.connect();
  try {
    await c.query('begin');
    await applyAuthEvents(c, relevant);
    if (checkpoint)
      await c.query(
        `insert into keel_auth_checkpoints (name, position) values ($1, $2)
         on conflict (name) do update set position = greatest(keel_auth_checkpoints.position, excluded.position), updated_at = now()`,
        [checkpoint.name, checkpoint.position],
      );
    await c.query('commit');
  } catch (e) {
    await c.query('rollback').catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}

export interface AuthProjectionHandle {
  /** Resolves once the projection has caught up with the log (for /ready). */
  readonly caughtUp: Promise<void>;
  isCaughtUp(): boolean;
  stop(): Promise<void>;
}

/**
 * Keeps the auth tables in step with the log from their checkpoint: first a catch-up read to
 * the head (then `caughtUp` resolves; /ready waits for it), then a live subscription.
 */
export async function startAuthProjection(options: {
  store: EventStore;
  pool: pg.Pool;
  logger: Logger;
  name?: string;
}): Promise<AuthProjectionHandle> {
  const name = options.name ?? 'auth';
  const filter = { categories: [...AUTH_CATEGORIES] };
  const r = await options.pool.query<{ position: string }>('select position from keel_auth_checkpoints where name = $1', [name]);
  let position = Number(r.rows[0]?.position ?? 0);
  let live = false;
  let stopped = false;
  let sub: Subscription | undefined;

  const caughtUp = (async () => {
    for (;;) {
      if (stopped) return;
      const batch = await options.store.readAll({ after: position, maxCount: 1000, filter });
      if (batch.position > position) {
        // Checkpoint even a batch the filter emptied, so a restart does not rescan it.
        await applyAuthEventsInTransaction(options.pool, batch.events, { name, position: batch.position });
        position = batch.position;
      }
      if (batch.isEnd) break;
    }
    live = true;
    if (stopped) return;
    sub = options.store.subscribe({ after: position, filter, batchSize: 500 }, async (events, ctx) => {
      await applyAuthEventsInTransaction(options.pool, events, { name, position: ctx.position });
    });
    sub.done.catch((err) => options.logger.error({ err }, 'auth projection stopped'));
  })();
  caughtUp.catch((err) => options.logger.error({ err }, 'auth projection could not catch up'));
  return {
    caughtUp,
    isCaughtUp: () => live,
    async stop() {
      stopped = true;
      await caughtUp.catch(() => undefined);
      await sub?.stop();
    },
  };
}
