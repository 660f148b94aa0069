import { lookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Outbound calls go to tenants' URLs: without a check, a tenant could point a webhook or an HTTP
 * step at this machine's own services, the cloud metadata endpoint (169.254.169.254) or anything
 * else on the private network (SSRF). With private networks denied, every connection's addresses
 * are checked when the connection is made (a DNS name that resolves to a private address is
 * refused, also when it only does so on the second lookup), and IP literals before the call.
 */
export const DESTINATION_NOT_ALLOWED = 'DESTINATION_NOT_ALLOWED';

const denied = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this" network
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const)
  denied.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const)
  denied.addSubnet(net, prefix, 'ipv6');

/** True for loopback, private, link-local and other non-public addresses (IPv4-mapped IPv6 included). */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return denied.check(address, 'ipv4');
  if (family !== 6) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return denied.check(mapped[1]!, 'ipv4');
  return denied.check(address, 'ipv6');
}

export class DestinationNotAllowedError extends Error {
  readonly code = DESTINATION_NOT_ALLOWED;
  constructor(host: string, address: string) {
    super(`${host} resolves to ${address}, a private or local address; outbound calls there are not allowed`);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A drop-in for dns.lookup (as net.connect calls it) that refuses private addresses. */
export function publicOnlyLookup(hostname: string, options: LookupAllOptions | Record<string, unknown>, callback: LookupCallback): void {
  lookup(hostname, { ...(options as object), all: true }, (err, addresses) => {
    if (err) return callback(err, []);
    const bad = addresses.find((a) => isPrivateAddress(a.address));
    if (bad) return callback(new DestinationNotAllowedError(hostname, bad.address) as unknown as NodeJS.ErrnoException, []);
    if ((options as { all?: boolean }).all) return callback(null, addresses);
    const first = addresses[0]!;
    callback(null, first.address, first.family);
  });
}
