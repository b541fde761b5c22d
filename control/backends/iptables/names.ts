// kube-proxy's chain names, reproduced exactly so its documentation and habits carry over:
// base32(sha256(servicePortName + lowercase protocol [+ endpoint])) cut to 16 characters.
// Pure.
import { createHash } from 'node:crypto';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 with padding (Go's base32.StdEncoding). */
export function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

export function hash16(text: string): string {
  return base32(createHash('sha256').update(text).digest()).slice(0, 16);
}

/** kube-proxy's portProtoHash. */
export function portProtoHash(servicePortName: string, protocol: string): string {
  return hash16(servicePortName + protocol.toLowerCase());
}

export const serviceChain = (spn: string, proto: string): string => `KUBE-SVC-${portProtoHash(spn, proto)}`;
export const serviceLocalChain = (spn: string, proto: string): string => `KUBE-SVL-${portProtoHash(spn, proto)}`;
export const externalChain = (spn: string, proto: string): string => `KUBE-EXT-${portProtoHash(spn, proto)}`;
export const firewallChain = (spn: string, proto: string): string => `KUBE-FW-${portProtoHash(spn, proto)}`;

/** KUBE-SEP-*: the endpoint ("ip:port", IPv6 in brackets) joins the hashed string. */
export function endpointChain(spn: string, proto: string, endpoint: string): string {
  return `KUBE-SEP-${hash16(spn + proto.toLowerCase() + endpoint)}`;
}
