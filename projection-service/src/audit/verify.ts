import type pg from 'pg';
import { checkpointMessage, createChainVerifier } from './chain.ts';
import type { BreakReason, Checkpoint } from './chain.ts';
import { AUDIT_COLUMNS, mapAuditRow } from './query.ts';
import type { AuditKeyring } from './signing.ts';
import { withTenant } from '../read/tenant-tx.ts';

/**
 * `GET /audit/verify` and `keel audit verify`: recompute a tenant's hash chain from the stored
 * rows (in chunks, constant memory), check every signed checkpoint's signature and that the chain
 * passes through it, and that the chain ends where the projector's head says it does.
 */
export interface VerifyResult {
  ok: boolean;
  /** Rows checked (up to and including the first broken one). */
  checked: number;
  /** Global position of the first row (or checkpoint) that does not verify. */
  firstBrokenAt?: number;
  /** Chain seq of that row. */
  firstBrokenSeq?: number;
  reason?: BreakReason;
  checkpoints: { checked: number; total: number; keyIds: string[] };
  head?: { seq: number; position: number; hash: string };
}

export async function verifyTenantChain(
  pool: pg.Pool,
  tenantId: string,
  keyring: AuditKeyring,
  options: { chunkSize?: number; onProgress?: (checked: number) => void } = {},
): Promise<VerifyResult> {
  const chunk = options.chunkSize ?? 10_000;
  const { checkpoints, head } = await withTenant(pool, tenantId, async (c) => {
    const cps = await c.query(
      'select tenant_id, seq, position, hash, signed_at, key_id, signature from audit_checkpoints where tenant_id = $1 order by seq',
      [tenantId],
    );
    const h = await c.query('select seq, hash, position from audit_chain_heads where tenant_id = $1', [tenantId]);
    return {
      checkpoints: cps.rows.map((r): Checkpoint => ({
        tenantId: r.tenant_id as string,
        seq: Number(r.seq),
        position: Number(r.position),
        hash: r.hash as Buffer,
        signedAt: r.signed_at as Date,
        keyId: r.key_id as string,
        signature: r.signature as Buffer,
      })),
      head: h.rows[0]
        ? { seq: Number(h.rows[0].seq), hash: h.rows[0].hash as Buffer, position: Number(h.rows[0].position) }
        : undefined,
    };
  });

  const verifier = createChainVerifier(tenantId, {
    checkpoints,
    verifySignature: (cp) => keyring.verify(cp.keyId, checkpointMessage(cp), cp.signature),
  });
  let after = 0;
  outer: for (;;) {
    const res = await withTenant(pool, tenantId, (c) =>
      c.query(
        `select ${AUDIT_COLUMNS} from audit_events where tenant_id = $1 and global_position > $2 order by global_position limit $3`,
        [tenantId, after, chunk],
      ),
    );
    for (const r of res.rows) {
      if (!verifier.next(mapAuditRow(r))) break outer;
    }
    options.onProgress?.(verifier.checked);
    if (res.rows.length < chunk) break;
    after = Number(res.rows[res.rows.length - 1].global_position);
  }
  const broken = verifier.finish(head);
  return {
    ok: !broken,
    checked: verifier.checked,
    ...(broken ? { firstBrokenAt: broken.position, firstBrokenSeq: broken.seq, reason: broken.reason } : {}),
    checkpoints: {
      checked: verifier.checkpointsChecked,
      total: checkpoints.length,
      keyIds: [...new Set(checkpoints.map((c) => c.keyId))],
    },
    ...(head ? { head: { seq: head.seq, position: head.position, hash: head.hash.toString('hex') } } : {}),
  };
}
