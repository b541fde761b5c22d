// IP addresses and CIDRs for the model: parsing (strict, as the API validates them), family,
// canonical text, and containment. Pure.
import { isIPv4, isIPv6 } from 'node:net';
import { formatIpv6, ipv6Bytes } from '../bpf/codec.ts';

export type Family = 4 | 6;

export function familyOf(ip: string): Family | undefined {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return undefined;
}

/**
 * The canonical text of an IP, or undefined if it is not one. IPv4 with leading zeros is
 * refused (as the API server does since 1.22); IPv4-mapped IPv6 is refused too, because
 * kube-proxy would treat it as the other family.
 */
export function canonicalIp(text: string): string | undefined {
  if (typeof text !== 'string') return undefined;
  if (isIPv4(text)) return /(^|\.)0\d/.test(text) ? undefined : text;
  if (isIPv6(text)) {
    if (text.includes('%')) return undefined;
    const canonical = formatIpv6(ipv6Bytes(text));
    if (/^::ffff:/i.test(canonical) && text.includes('.')) return undefined;
    return canonical;
  }
  return undefined;
}

/** "addr:port", with IPv6 addresses in brackets. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** An address as a bigint, for containment checks. */
export function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) return ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
  const bytes = ipv6Bytes(ip);
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export interface Cidr {
  family: Family;
  /** Canonical "network/prefix" text (host bits cleared). */
  text: string;
  network: bigint;
  prefix: number;
}

/** Parses "a.b.c.d/n" or "x::/n" (surrounding spaces trimmed); undefined when invalid. */
export function parseCidr(input: string): Cidr | undefined {
  if (typeof input !== 'string') return undefined;
  const text = input.trim();
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const addr = canonicalIp(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (addr === undefined || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const family = familyOf(addr)!;
  const bits = family === 4 ? 32 : 128;
  const prefix = Number(prefixText);
  if (prefix > bits) return undefined;
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
  const network = ipToBigInt(addr) & mask;
  return { family, text: `${formatAddress(network, family)}/${prefix}`, network, prefix };
}

function formatAddress(value: bigint, family: Family): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 255n)).join('.');
  const buf = Buffer.alloc(16);
  for (let i = 15, v = value; i >= 0; i--, v >>= 8n) buf[i] = Number(v & 255n);
  return formatIpv6(buf);
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const family = familyOf(ip);
  if (family !== cidr.family) return false;
  const bits = family === 4 ? 32 : 128;
  const shift = BigInt(bits - cidr.prefix);
  return ipToBigInt(ip) >> shift === cidr.network >> shift;
}

export function anyContains(cidrs: readonly Cidr[], ip: string): boolean {
  return cidrs.some((c) => cidrContains(c, ip));
}
