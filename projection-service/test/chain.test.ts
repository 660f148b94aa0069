import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '@keel/shared-events';
import {
  appendToChain,
  canonicalEntry,
  checkpointMessage,
  createChainVerifier,
  emptyHead,
  genesisHash,
  linkHash,
} from '../src/audit/chain.ts';
import type { ChainHead, Checkpoint } from '../src/audit/chain.ts';
import { toAuditEntry } from '../src/audit/row.ts';
import type { AuditEntry, AuditRow } from '../src/audit/row.ts';
import { CopyBinaryWriter, writeAuditRecord } from '../src/audit/copy.ts';
import { chainBatch } from '../src/audit/store.ts';
import type { HeadState } from '../src/audit/store.ts';
import { createAuditKeyring, createAuditSigner } from '../src/audit/signing.ts';
import { eventFactory } from './fixtures.ts';

function chainOf(tenant: string, n: number): { rows: AuditRow[]; head: ChainHead } {
  const event = eventFactory();
  let head = emptyHead(tenant);
  const rows: AuditRow[] = [];
  for (let i = 0; i < n; i++) {
    const r = appendToChain(
      head,
      toAuditEntry(
        event(tenant, 'record', `c-${i}`, 'RecordIngested', { source: 's', n: i, nested: { b: 1, a: [1, 'x'] } }),
      ),
    );
    head = r.head;
    rows.push(r.row!);
  }
  return { rows, head };
}

function verify(
  tenant: string,
  rows: AuditRow[],
  checkpoints: Checkpoint[] = [],
  head?: ChainHead,
  keyring = createAuditKeyring([]),
) {
  const v = createChainVerifier(tenant, {
    checkpoints,
    verifySignature: (c) => keyring.verify(c.keyId, checkpointMessage(c), c.signature),
  });
  for (const r of rows) if (!v.next(r)) break;
  return { broken: v.finish(head), checked: v.checked };
}

describe('the canonical form of an audit entry', () => {
  it('is canonicalJson of the whole entry, so anyone can recompute it', () => {
    const event = eventFactory();
    const entry = toAuditEntry(
      event('t1', 'access', 'main', 'ApiKeyIssued', {
        z: 1,
        keyId: 'k9',
        name: 'ci "bot"',
        role: 'viewer',
        secretHash: 'h',
      }),
    );
    const expected = canonicalJson({
      v: 1,
      tenantId: entry.tenantId,
      globalPosition: entry.globalPosition,
      streamId: entry.streamId,
      streamPosition: entry.streamPosition,
      eventId: entry.eventId,
      type: entry.type,
      schemaVersion: entry.schemaVersion,
      actor: { kind: entry.actorKind, id: entry.actorId },
      occurredAt: entry.occurredAt.toISOString(),
      recordedAt: entry.recordedAt.toISOString(),
      correlationId: entry.correlationId,
      causationId: entry.causationId,
      data: JSON.parse(entry.payload),
    });
    expect(canonicalEntry(entry)).toBe(expected);
  });

  it('stores the payload as canonical text and derives the subject', () => {
    const event = eventFactory();
    const entry = toAuditEntry(
      event('t1', 'record', 'customer-42', 'RecordIngested', { externalId: '42', entityType: 'customer', b: 2, a: 1 }),
    );
    expect(entry.payload).toBe('{"a":1,"b":2,"entityType":"customer","externalId":"42"}');
    expect(entry.subject).toBe('record:customer/42');
    const run = toAuditEntry(
      event('t1', 'run', 'r1', 'StepFailed', { runId: 'r1', stepIndex: 0, attempt: 1, error: 'x' }),
    );
    expect(run.subject).toBe('run:r1');
  });
});

describe('the link hash', () => {
  /** The definition, spelled out independently: SHA-256(previous hash ‖ UTF-8 of canonicalJson of the whole entry). */
  const reference = (previous: Buffer, e: AuditEntry) =>
    createHash('sha256')
      .update(previous)
      .update(
        Buffer.from(
          canonicalJson({
            v: 1,
            tenantId: e.tenantId,
            globalPosition: e.globalPosition,
            streamId: e.streamId,
            streamPosition: e.streamPosition,
            eventId: e.eventId,
            type: e.type,
            schemaVersion: e.schemaVersion,
            actor: { kind: e.actorKind, id: e.actorId },
            occurredAt: e.occurredAt.toISOString(),
            recordedAt: e.recordedAt.toISOString(),
            correlationId: e.correlationId,
            causationId: e.causationId,
            data: JSON.parse(e.payload),
          }),
          'utf8',
        ),
      )
      .digest();

  it('is SHA-256 of the previous hash and the canonical form, for any text and size', () => {
    const event = eventFactory(new Date('1999-12-31T23:59:58.123Z'));
    const datas: Record<string, unknown>[] = [
      { b: 'ascii', a: 1 },
      { text: 'é ü 中文 😀 \u2028 "quoted" \\ back\tslash\n', lone: '\ud800 x \udfff' },
      { big: '€'.repeat(40_000) }, // more than the reused buffer holds at first (3 bytes a char)
      { after: 'small again' },
      { 10: 'ten', 9: 'nine', __proto__: null, nested: [{ z: 1, y: [null, true, 1.5e-7] }] },
    ];
    let previous = genesisHash('t1');
    for (const data of datas) {
      const entry = toAuditEntry(
        event('t1', 'record', 'ü-1', 'RecordIngested', data, {
          causationId: 'c\u00e9',
          actor: { kind: 'user', id: 'ü "q" \\ \u0001 \ud800' },
        }),
      );
      const h = linkHash(previous, entry);
      expect(h.toString('hex')).toBe(reference(previous, entry).toString('hex'));
      previous = h;
    }
  });
});

describe('chaining a batch', () => {
  it('writes the COPY records of the rows appendToChain makes, heads included, redeliveries skipped', () => {
    const event = eventFactory();
    const events = [
      event('t1', 'record', 'a', 'RecordIngested', { b: 2, a: 'ü\\t' }),
      event('t2', 'record', 'b', 'RecordIngested', { text: 'line\nbreak' }, { correlationId: undefined }),
      event('t1', 'user', 'u1', 'UserInvited', { userId: 'u1' }),
    ];
    const heads = new Map<string, HeadState>();
    const first = chainBatch(events.slice(0, 2), heads, { checkpointEvery: 0 });
    const second = chainBatch([events[1]!, events[2]!], heads, { checkpointEvery: 0 }); // events[1] redelivered

    const rows: AuditRow[] = [];
    const ref = new Map<string, ChainHead>();
    for (const e of events) {
      const r = appendToChain(ref.get(e.tenantId) ?? emptyHead(e.tenantId), toAuditEntry(e));
      ref.set(e.tenantId, r.head);
      rows.push(r.row!);
    }
    const copyOf = (batch: AuditRow[]) => {
      const w = new CopyBinaryWriter(0);
      for (const r of batch) writeAuditRecord(w, r);
      return w.finish();
    };
    expect(first.copy.equals(copyOf(rows.slice(0, 2)))).toBe(true);
    expect(second.copy.equals(copyOf(rows.slice(2)))).toBe(true);
    expect([first.written, second.written]).toEqual([2, 1]);
    expect(second.heads.map((h) => [h.tenantId, h.seq])).toEqual([['t1', 2]]);
    expect(heads.get('t1')!.hash.equals(ref.get('t1')!.hash)).toBe(true);
    expect(heads.get('t2')!.hash.equals(ref.get('t2')!.hash)).toBe(true);
  });
});

describe('the per-tenant hash chain', () => {
  it('links each row to the previous hash, starting from a per-tenant genesis', () => {
    const { rows } = chainOf('t1', 3);
    expect(rows.map((r) => r.chainSeq)).toEqual([1, 2, 3]);
    expect(rows[0]!.hash.equals(linkHash(genesisHash('t1'), rows[0]!))).toBe(true);
    expect(rows[2]!.hash.equals(linkHash(rows[1]!.hash, rows[2]!))).toBe(true);
    expect(genesisHash('t1').equals(genesisHash('t2'))).toBe(false);
  });

  it('skips a redelivered event instead of chaining it twice', () => {
    const event = eventFactory();
    const e = event('t1', 'tenant', 'main', 'TenantCreated', { name: 'A' });
    const first = appendToChain(emptyHead('t1'), toAuditEntry(e));
    const again = appendToChain(first.head, toAuditEntry(e));
    expect(again.row).toBeUndefined();
    expect(again.head).toBe(first.head);
  });

  it('verifies an intact chain', () => {
    const { rows, head } = chainOf('t1', 20);
    expect(verify('t1', rows, [], head)).toEqual({ broken: undefined, checked: 20 });
  });

  it('locates an altered row', () => {
    const { rows } = chainOf('t1', 10);
    rows[6] = { ...rows[6]!, payload: '{"n":666}' };
    expect(verify('t1', rows).broken).toEqual({ position: rows[6]!.globalPosition, seq: 7, reason: 'hash_mismatch' });
  });

  it('locates a removed row', () => {
    const { rows } = chainOf('t1', 10);
    const removed = rows.splice(4, 1)[0]!;
    expect(verify('t1', rows).broken).toMatchObject({ seq: removed.chainSeq, reason: 'sequence_gap' });
  });

  it('locates reordered rows', () => {
    const { rows } = chainOf('t1', 10);
    // Swap the positions (and seqs) of rows 3 and 4: the walk order changes, the hashes do not follow.
    const a = rows[3]!;
    const b = rows[4]!;
    rows[3] = { ...b, chainSeq: a.chainSeq, globalPosition: a.globalPosition };
    rows[4] = { ...a, chainSeq: b.chainSeq, globalPosition: b.globalPosition };
    expect(verify('t1', rows).broken).toMatchObject({ seq: 4, reason: 'hash_mismatch' });
  });

  it('refuses a row of another tenant', () => {
    const { rows } = chainOf('t1', 3);
    const other = chainOf('t2', 3).rows;
    expect(verify('t1', [rows[0]!, other[1]!]).broken?.reason).toBe('tenant_mismatch');
  });
});

describe('signed checkpoints', () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  const signer = createAuditSigner(privateKey);
  const keyring = createAuditKeyring([signer.publicKey]);
  const sign = (rows: AuditRow[], seq: number): Checkpoint => {
    const r = rows[seq - 1]!;
    const unsigned = {
      tenantId: 't1',
      seq,
      position: r.globalPosition,
      hash: r.hash,
      signedAt: new Date('2025-03-02T00:00:00Z'),
      keyId: signer.keyId,
    };
    return { ...unsigned, signature: signer.sign(checkpointMessage(unsigned)) };
  };

  it('verify when the chain passes through them', () => {
    const { rows, head } = chainOf('t1', 10);
    const v = createChainVerifier('t1', {
      checkpoints: [sign(rows, 5), sign(rows, 10)],
      verifySignature: (c) => keyring.verify(c.keyId, checkpointMessage(c), c.signature),
    });
    for (const r of rows) v.next(r);
    expect(v.finish(head)).toBeUndefined();
    expect(v.checkpointsChecked).toBe(2);
  });

  it('catch a rewritten chain whose hashes were all recomputed', () => {
    const { rows } = chainOf('t1', 10);
    const cps = [sign(rows, 5), sign(rows, 10)];
    // The attacker changes row 3 and recomputes every hash after it: the chain is self-consistent...
    const forged: AuditRow[] = [];
    let head = emptyHead('t1');
    for (const r of rows) {
      const entry = r.chainSeq === 3 ? { ...r, payload: '{"n":999}' } : r;
      const next = appendToChain(head, entry);
      head = next.head;
      forged.push(next.row!);
    }
    // ...but no longer passes through the signed checkpoint at seq 5.
    expect(verify('t1', forged, cps, undefined, keyring).broken).toMatchObject({
      seq: 5,
      reason: 'checkpoint_mismatch',
    });
  });

  it('catch a forged or foreign signature', () => {
    const { rows } = chainOf('t1', 6);
    const cp = sign(rows, 5);
    const tampered = { ...cp, signedAt: new Date('2030-01-01T00:00:00Z') };
    expect(verify('t1', rows, [tampered], undefined, keyring).broken?.reason).toBe('checkpoint_signature');
    const otherKeyring = createAuditKeyring([createAuditSigner(generateKeyPairSync('ed25519').privateKey).publicKey]);
    expect(verify('t1', rows, [cp], undefined, otherKeyring).broken?.reason).toBe('checkpoint_signature');
  });

  it('catch rows removed from the end', () => {
    const { rows, head } = chainOf('t1', 10);
    const cps = [sign(rows, 10)];
    expect(verify('t1', rows.slice(0, 8), cps, undefined, keyring).broken).toMatchObject({
      seq: 10,
      reason: 'checkpoint_beyond_chain',
    });
    // Without a checkpoint covering them, the projector's head still names the missing end.
    expect(verify('t1', rows.slice(0, 8), [], head, keyring).broken).toMatchObject({
      reason: 'head_mismatch',
      position: head.position,
    });
  });
});
