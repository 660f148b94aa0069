/**
 * CRC-64-AVRO (the Rabin fingerprint of the Avro specification, "Schema Fingerprints"), over
 * the schema's Parsing Canonical Form. Computed once per schema at start, so BigInt is fine.
 */
const EMPTY = 0xc15d213aa4d7a795n;
const MASK = 0xffffffffffffffffn;

const TABLE: bigint[] = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & (-(fp & 1n) & MASK));
  return fp;
});

/** The fingerprint as an unsigned 64-bit integer. */
export function crc64Avro(bytes: Uint8Array | string): bigint {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  let fp = EMPTY;
  for (const b of buf) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(b)) & 0xffn)]!;
  return fp;
}

/** 16 lowercase hex digits, most significant first (how Avro tools print fingerprints). */
export function fingerprintHex(fp: bigint): string {
  return fp.toString(16).padStart(16, '0');
}
