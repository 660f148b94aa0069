import type pg from 'pg';
import { READER_ROLE } from '../db/schema.ts';

/**
 * Runs `fn` in a read-only transaction as the RLS reader role with the tenant set for that
 * transaction only (`set_config(..., true)` = SET LOCAL): row-level security then shows nothing
 * of any other tenant, even to a query that forgets its `tenant_id = $1`. Both settings end with
 * the transaction, so a pooled connection never carries one request's tenant into the next.
 */
export async function withTenant<T>(
  pool: pg.Pool,
  tenantId: string,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    // One round trip: the simple protocol takes both statements (no bind parameters, hence the escaped literal).
    await client.query(
      `begin read only; select set_config('keel.tenant_id', ${client.escapeLiteral(tenantId)}, true), set_config('role', '${READER_ROLE}', true)`,
    );
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (e) {
    await client.query('rollback').catch(() => {
      broken = true;
    });
    throw e;
  } finally {
    client.release(broken);
  }
}

/** A transaction as the projector (table owner), for writes. */
export async function withWriteTx<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('begin');
    const result = await fn(client);
    await client.query('commit');
    return result;
  } catch (e) {
    await client.query('rollback').catch(() => {
      broken = true;
    });
    throw e;
  } finally {
    client.release(broken);
  }
}
