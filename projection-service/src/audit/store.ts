import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { RecordedEvent } from '@keel/shared-events';
import { appendToChain, checkpointMessage, emptyHead } from './chain.ts';
import type { ChainHead, Checkpoint } from './chain.ts';
import { AUDIT_COPY_COLUMNS, CopyBinaryWriter, writeAuditRecord } from './copy.ts';
import { toAuditEntry } from './row.ts';
import type { AuditSigner } from './signing.ts';
import type { TableNames } from '../db/schema.ts';

/**
 * The audit projector's writes: chain a batch of events onto their tenants' chains and store the
 * rows, the new chain heads and any checkpoints due, all in the caller's transaction (the bus
 * projector helper commits them together with its position: effectively once).
 */
export interface HeadState extends ChainHead {
  checkpointSeq: number;
  checkpointAt: Date | null;
}

export interface AuditApplyOptions {
  tables: TableNames;
  /** Signs a checkpoint every `checkpointEvery` rows of a tenant (at seq multiples). Absent: no checkpoints. */
  signer?: AuditSigner;
  checkpointEvery: number;
  now?: () => Date;
  /**
   * Heads already known to the caller (the rebuild, the only writer of its shadow tables, keeps
   * them in memory between batches); when absent they are read and locked (`for update`).
   */
  heads?: Map<string, HeadState>;
}

export interface AuditApplyResult {
  /** Rows written (redeliveries are skipped). */
  written: number;
  lastPosition: number;
}

function headOf(row: Record<string, unknown>): HeadState {
  return {
    tenantId: String(row.tenant_id),
    seq: Number(row.seq),
    hash: row.hash as Buffer,
    position: Number(row.position),
    checkpointSeq: Number(row.checkpoint_seq),
    checkpointAt: (row.checkpoint_at as Date | null) ?? null,
  };
}

export async function loadHeads(
  client: pg.ClientBase,
  tables: TableNames,
  tenantIds: string[],
  lock: boolean,
): Promise<Map<string, HeadState>> {
  const res = await client.query(
    `select tenant_id, seq, hash, position, checkpoint_seq, checkpoint_at from ${tables.audit_chain_heads}
     where tenant_id = any($1::text[]) order by tenant_id ${lock ? 'for update' : ''}`,
    [tenantIds],
  );
  return new Map(res.rows.map((r: Record<string, unknown>) => [String(r.tenant_id), headOf(r)]));
}

export function signCheckpoint(signer: AuditSigner, head: ChainHead, signedAt: Date): Checkpoint {
  const unsigned = {
    tenantId: head.tenantId,
    seq: head.seq,
    position: head.position,
    hash: head.hash,
    signedAt,
    keyId: signer.keyId,
  };
  return { ...unsigned, signature: signer.sign(checkpointMessage(unsigned)) };
}

/** A batch chained in memory, ready to be written. */
export interface ChainedBatch {
  /**
   * The new rows as binary COPY data (copy.ts), each row written as soon as it is made. A staged
   * batch waits for the previous one to be written: held as row objects, or as one string of
   * 10,000 concatenated lines, all of it was copied by every young-generation collection
   * meanwhile and then promoted (the collector took 19-23% of a rebuild's time). Bytes off the
   * JS heap cost the collector nothing, and are what COPY sends anyway.
   */
  copy: Buffer;
  written: number;
  heads: HeadState[];
  checkpoints: Checkpoint[];
  lastPosition: number;
}

/**
 * Chains events onto the given heads (updated in place) without touching the database: the pure
 * half of applying a batch, which lets a rebuild compute the next batch while the previous one
 * is being written.
 */
export function chainBatch(
  events: RecordedEvent[],
  heads: Map<string, HeadState>,
  options: Pick<AuditApplyOptions, 'signer' | 'checkpointEvery'> & { now?: Date },
): ChainedBatch {
  const now = options.now ?? new Date();
  // Sized for ~1 KB rows (what the benchmark's events make) so that a batch rarely regrows.
  const copy = new CopyBinaryWriter(events.length * 1024);
  let written = 0;
  const checkpoints: Checkpoint[] = [];
  const touched = new Set<string>();
  let lastPosition = 0;
  for (const event of events) {
    lastPosition = Math.max(lastPosition, event.globalPosition);
    const head = heads.get(event.tenantId) ?? { ...emptyHead(event.tenantId), checkpointSeq: 0, checkpointAt: null };
    const { head: next, row } = appendToChain(head, toAuditEntry(event));
    if (!row) continue;
    const state: HeadState = {
      tenantId: next.tenantId,
      seq: next.seq,
      hash: next.hash,
      position: next.position,
      checkpointSeq: head.checkpointSeq,
      checkpointAt: head.checkpointAt,
    };
    if (options.signer && options.checkpointEvery > 0 && row.chainSeq % options.checkpointEvery === 0) {
      checkpoints.push(signCheckpoint(options.signer, next, now));
      state.checkpointSeq = row.chainSeq;
      state.checkpointAt = now;
    }
    heads.set(event.tenantId, state);
    touched.add(event.tenantId);
    writeAuditRecord(copy, row);
    written++;
  }
  return { copy: copy.finish(), written, heads: [...touched].map((t) => heads.get(t)!), checkpoints, lastPosition };
}

export async function writeChainedBatch(client: pg.ClientBase, tables: TableNames, batch: ChainedBatch): Promise<void> {
  if (batch.written) {
    await copyAuditRows(client, tables.audit_events!, batch.copy);
    await saveHeads(client, tables.audit_chain_heads!, batch.heads);
  }
  if (batch.checkpoints.length) await insertCheckpoints(client, batch.checkpoints);
}

export async function applyAuditBatch(
  client: pg.ClientBase,
  events: RecordedEvent[],
  options: AuditApplyOptions,
): Promise<AuditApplyResult> {
  if (events.length === 0) return { written: 0, lastPosition: 0 };
  const tenantIds = [...new Set(events.map((e) => e.tenantId))];
  const heads = options.heads ?? (await loadHeads(client, options.tables, tenantIds, true));
  const batch = chainBatch(events, heads, {
    signer: options.signer,
    checkpointEvery: options.checkpointEvery,
    now: options.now?.(),
  });
  await writeChainedBatch(client, options.tables, batch);
  return { written: batch.written, lastPosition: batch.lastPosition };
}

/**
 * Rows go in through COPY (`copy` is a ChainedBatch's binary COPY data): about three times the
 * rate of an INSERT from unnest'ed arrays or json_populate_recordset (measured on the audit
 * rows), which is what a rebuild of millions needs.
 */
export async function copyAuditRows(client: pg.ClientBase, table: string, copy: Buffer): Promise<void> {
  const stream = client.query(copyFrom(`copy ${table} (${AUDIT_COPY_COLUMNS}) from stdin with (format binary)`));
  await pipeline(Readable.from([copy]), stream);
}

export async function saveHeads(client: pg.ClientBase, table: string, heads: HeadState[]): Promise<void> {
  if (!heads.length) return;
  await client.query(
    `insert into ${table} (tenant_id, seq, hash, position, checkpoint_seq, checkpoint_at)
     select t, s, decode(h, 'hex'), p, cs, ca
     from unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[]) as x(t, s, h, p, cs, ca)
     on conflict (tenant_id) do update set seq = excluded.seq, hash = excluded.hash, position = excluded.position,
       checkpoint_seq = excluded.checkpoint_seq, checkpoint_at = excluded.checkpoint_at`,
    [
      heads.map((h) => h.tenantId),
      heads.map((h) => h.seq),
      heads.map((h) => h.hash.toString('hex')),
      heads.map((h) => h.position),
      heads.map((h) => h.checkpointSeq),
      heads.map((h) => h.checkpointAt?.toISOString() ?? null),
    ],
  );
}

export async function insertCheckpoints(client: pg.ClientBase, checkpoints: Checkpoint[]): Promise<void> {
  await client.query(
    `insert into audit_checkpoints (tenant_id, seq, position, hash, signed_at, key_id, signature)
     select t, s, p, decode(h, 'hex'), sa, k, decode(sg, 'hex')
     from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[], $6::text[], $7::text[]) as x(t, s, p, h, sa, k, sg)
     on conflict (tenant_id, seq) do nothing`,
    [
      checkpoints.map((c) => c.tenantId),
      checkpoints.map((c) => c.seq),
      checkpoints.map((c) => c.position),
      checkpoints.map((c) => c.hash.toString('hex')),
      checkpoints.map((c) => c.signedAt.toISOString()),
      checkpoints.map((c) => c.keyId),
      checkpoints.map((c) => c.signature.toString('hex')),
    ],
  );
}

/**
 * Time-based checkpoints: signs the head of every chain that grew since its last checkpoint and
 * whose last checkpoint is older than `olderThanMs` (or that never had one). Runs in its own
 * transaction, serialised with the projector by the head row locks.
 */
export async function checkpointStaleHeads(
  client: pg.ClientBase,
  signer: AuditSigner,
  olderThanMs: number,
  now: Date = new Date(),
): Promise<number> {
  const res = await client.query(
    `select tenant_id, seq, hash, position, checkpoint_seq, checkpoint_at from audit_chain_heads
     where seq > checkpoint_seq and (checkpoint_at is null or checkpoint_at < $1)
     order by tenant_id for update skip locked`,
    [new Date(now.getTime() - olderThanMs).toISOString()],
  );
  const heads = res.rows.map((r: Record<string, unknown>) => headOf(r));
  if (!heads.length) return 0;
  const checkpoints = heads.map((h) => signCheckpoint(signer, h, now));
  await insertCheckpoints(client, checkpoints);
  await client.query(
    `update audit_chain_heads h set checkpoint_seq = x.s, checkpoint_at = $3
     from unnest($1::text[], $2::bigint[]) as x(t, s) where h.tenant_id = x.t`,
    [heads.map((h) => h.tenantId), heads.map((h) => h.seq), now.toISOString()],
  );
  return heads.length;
}
