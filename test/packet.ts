// Building and parsing Ethernet/IPv4/IPv6/TCP/UDP/SCTP packets for BPF_PROG_TEST_RUN tests, with
// checksums computed from scratch so a program's incremental updates can be checked.
import { isIPv4 } from 'node:net';
import { formatIpv6, ipv6Bytes } from '../control/bpf/codec.ts';

export const PROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;
export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export interface PacketSpec {
  src: string;
  dst: string;
  proto: 'tcp' | 'udp' | 'sctp';
  sport: number;
  dport: number;
  tcpFlags?: number;
  payload?: Buffer;
  ttl?: number;
  srcMac?: string;
  dstMac?: string;
}

function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

function ipv4Bytes(addr: string): Buffer {
  return Buffer.from(addr.split('.').map(Number));
}

/** One's-complement sum of 16-bit words, folded. */
export function csumAdd(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2 === 1) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function csumFinish(sum: number): number {
  return ~sum & 0xffff;
}

const CRC32C_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC32c (Castagnoli), as SCTP computes it over its packet (RFC 9260 appendix A). */
export function crc32c(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Whether an SCTP packet's checksum field (bytes 8..11, stored little-endian) holds its CRC32c. */
export function sctpChecksumOk(segment: Buffer): boolean {
  const copy = Buffer.from(segment);
  copy.writeUInt32LE(0, 8);
  return crc32c(copy) === segment.readUInt32LE(8);
}

function pseudoHeader(src: Buffer, dst: Buffer, proto: number, length: number): Buffer {
  if (src.length === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0);
    dst.copy(p, 4);
    p[9] = proto;
    p.writeUInt16BE(length, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0);
  dst.copy(p, 16);
  p.writeUInt32BE(length, 32);
  p[39] = proto;
  return p;
}

function l4Segment(spec: PacketSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0);
  if (spec.proto === 'tcp') {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(spec.sport, 0);
    h.writeUInt16BE(spec.dport, 2);
    h.writeUInt32BE(1000, 4);
    h.writeUInt32BE(spec.tcpFlags !== undefined && spec.tcpFlags & TCP_FLAGS.ACK ? 2000 : 0, 8);
    h[12] = 5 << 4;
    h[13] = spec.tcpFlags ?? TCP_FLAGS.SYN;
    h.writeUInt16BE(65535, 14);
    return Buffer.concat([h, payload]);
  }
  if (spec.proto === 'sctp') {
    // The common header and one INIT chunk (RFC 9260 3.3.2), checksum filled in by buildPacket.
    const h = Buffer.alloc(12 + 20);
    h.writeUInt16BE(spec.sport, 0);
    h.writeUInt16BE(spec.dport, 2);
    h[12] = 1; // INIT
    h.writeUInt16BE(20, 14);
    h.writeUInt32BE(0x1234abcd, 16); // initiate tag
    h.writeUInt32BE(65536, 20); // a_rwnd
    h.writeUInt16BE(10, 24); // outbound streams
    h.writeUInt16BE(10, 26); // inbound streams
    h.writeUInt32BE(1, 28); // initial TSN
    return Buffer.concat([h, payload]);
  }
  const h = Buffer.alloc(8);
  h.writeUInt16BE(spec.sport, 0);
  h.writeUInt16BE(spec.dport, 2);
  h.writeUInt16BE(8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

function withL4Checksum(segment: Buffer, proto: number, src: Buffer, dst: Buffer): Buffer {
  if (proto === PROTO.SCTP) {
    segment.writeUInt32LE(0, 8);
    segment.writeUInt32LE(crc32c(segment), 8);
    return segment;
  }
  const at = proto === PROTO.TCP ? 16 : 6;
  segment.writeUInt16BE(0, at);
  let c = csumFinish(csumAdd(segment, csumAdd(pseudoHeader(src, dst, proto, segment.length))));
  if (proto === PROTO.UDP && c === 0) c = 0xffff;
  segment.writeUInt16BE(c, at);
  return segment;
}

/** An Ethernet frame carrying one TCP, UDP or SCTP packet over IPv4 or IPv6, checksums correct. */
export function buildPacket(spec: PacketSpec): Buffer {
  const v4 = isIPv4(spec.src);
  const proto = spec.proto === 'tcp' ? PROTO.TCP : spec.proto === 'sctp' ? PROTO.SCTP : PROTO.UDP;
  const src = v4 ? ipv4Bytes(spec.src) : ipv6Bytes(spec.src);
  const dst = v4 ? ipv4Bytes(spec.dst) : ipv6Bytes(spec.dst);
  const segment = withL4Checksum(l4Segment(spec), proto, src, dst);
  const eth = Buffer.alloc(14);
  macBytes(spec.dstMac ?? '02:00:00:00:00:02').copy(eth, 0);
  macBytes(spec.srcMac ?? '02:00:00:00:00:01').copy(eth, 6);
  eth.writeUInt16BE(v4 ? 0x0800 : 0x86dd, 12);
  let ip: Buffer;
  if (v4) {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + segment.length, 2);
    ip.writeUInt16BE(0x4000, 6); // DF
    ip[8] = spec.ttl ?? 64;
    ip[9] = proto;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    ip.writeUInt16BE(csumFinish(csumAdd(ip)), 10);
  } else {
    ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(segment.length, 4);
    ip[6] = proto;
    ip[7] = spec.ttl ?? 64;
    src.copy(ip, 8);
    dst.copy(ip, 24);
  }
  return Buffer.concat([eth, ip, segment]);
}

export interface ParsedPacket {
  etherType: number;
  family: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  /** IPv4 header checksum verifies (always true for IPv6, which has none). */
  ipChecksumOk: boolean;
  sport: number;
  dport: number;
  tcpFlags: number;
  /** The TCP/UDP checksum verifies over the pseudo-header (a UDP checksum of 0 means none); SCTP's CRC32c over its packet. */
  l4ChecksumOk: boolean;
  /** Bytes after the IP header. */
  l4: Buffer;
}

/** Parses what buildPacket makes (and what a program returns), verifying checksums. */
export function parsePacket(frame: Buffer): ParsedPacket {
  const etherType = frame.readUInt16BE(12);
  const ipStart = 14;
  let family: 4 | 6;
  let src: Buffer;
  let dst: Buffer;
  let proto: number;
  let ttl: number;
  let l4Start: number;
  let ipChecksumOk = true;
  let l4Length: number;
  if (etherType === 0x0800) {
    family = 4;
    const ihl = (frame[ipStart]! & 0x0f) * 4;
    ipChecksumOk = csumFinish(csumAdd(frame.subarray(ipStart, ipStart + ihl))) === 0;
    proto = frame[ipStart + 9]!;
    ttl = frame[ipStart + 8]!;
    src = frame.subarray(ipStart + 12, ipStart + 16);
    dst = frame.subarray(ipStart + 16, ipStart + 20);
    l4Start = ipStart + ihl;
    l4Length = frame.readUInt16BE(ipStart + 2) - ihl;
  } else if (etherType === 0x86dd) {
    family = 6;
    proto = frame[ipStart + 6]!;
    ttl = frame[ipStart + 7]!;
    src = frame.subarray(ipStart + 8, ipStart + 24);
    dst = frame.subarray(ipStart + 24, ipStart + 40);
    l4Start = ipStart + 40;
    l4Length = frame.readUInt16BE(ipStart + 4);
  } else {
    throw new Error(`not IP: ethertype 0x${etherType.toString(16)}`);
  }
  const l4 = frame.subarray(l4Start, l4Start + l4Length);
  const hasPorts = proto === PROTO.TCP || proto === PROTO.UDP || proto === PROTO.SCTP;
  const udpNoChecksum = proto === PROTO.UDP && l4.readUInt16BE(6) === 0;
  const l4ChecksumOk =
    proto === PROTO.SCTP ? sctpChecksumOk(l4) : udpNoChecksum || csumFinish(csumAdd(l4, csumAdd(pseudoHeader(src, dst, proto, l4.length)))) === 0;
  return {
    etherType,
    family,
    src: family === 4 ? [...src].join('.') : formatIpv6(src),
    dst: family === 4 ? [...dst].join('.') : formatIpv6(dst),
    proto,
    ttl,
    ipChecksumOk,
    sport: hasPorts ? l4.readUInt16BE(0) : 0,
    dport: hasPorts ? l4.readUInt16BE(2) : 0,
    tcpFlags: proto === PROTO.TCP ? l4[13]! : 0,
    l4ChecksumOk,
    l4,
  };
}

/** One fragment's IP header as a program returned it. */
export interface FragmentInfo {
  family: 4 | 6;
  src: string;
  dst: string;
  id: number;
  /** Byte offset of its data in the datagram's L4 part. */
  offset: number;
  more: boolean;
  /** IPv4 header checksum verifies (IPv6 has none). */
  ipChecksumOk: boolean;
  /** The fragment's share of the datagram (after the IP and fragment headers). */
  data: Buffer;
  /** The protocol the datagram carries. */
  proto: number;
}

const IPV6_FRAGMENT = 44;

/**
 * Splits a frame made by buildPacket (IPv4 or IPv6, no extension headers) into fragments of at
 * most `size` bytes of L4 data each (a multiple of 8), as a sender's kernel does: IPv4 clears DF
 * and sets MF and the offset; IPv6 gets a fragment header. `id`: the datagram's identification.
 */
export function fragmentPacket(frame: Buffer, size: number, id: number): Buffer[] {
  if (size % 8 !== 0) throw new Error('fragment size must be a multiple of 8');
  const v4 = frame.readUInt16BE(12) === 0x0800;
  const ipLen = v4 ? 20 : 40;
  const eth = frame.subarray(0, 14);
  const ip = frame.subarray(14, 14 + ipLen);
  const l4 = frame.subarray(14 + ipLen);
  const out: Buffer[] = [];
  for (let off = 0; off < l4.length; off += size) {
    const chunk = l4.subarray(off, Math.min(l4.length, off + size));
    const more = off + size < l4.length;
    const h = Buffer.from(ip);
    if (v4) {
      h.writeUInt16BE(20 + chunk.length, 2);
      h.writeUInt16BE(id & 0xffff, 4);
      h.writeUInt16BE((more ? 0x2000 : 0) | (off >> 3), 6);
      h.writeUInt16BE(0, 10);
      h.writeUInt16BE(csumFinish(csumAdd(h)), 10);
      out.push(Buffer.concat([eth, h, chunk]));
    } else {
      const fh = Buffer.alloc(8);
      fh[0] = ip[6]!;
      fh.writeUInt16BE(off | (more ? 1 : 0), 2);
      fh.writeUInt32BE(id >>> 0, 4);
      h[6] = IPV6_FRAGMENT;
      h.writeUInt16BE(8 + chunk.length, 4);
      out.push(Buffer.concat([eth, h, fh, chunk]));
    }
  }
  return out;
}

/** Reads a fragment made by fragmentPacket (or a program's rewrite of one). */
export function fragmentInfo(frame: Buffer): FragmentInfo {
  if (frame.readUInt16BE(12) === 0x0800) {
    const ihl = (frame[14]! & 0x0f) * 4;
    const fo = frame.readUInt16BE(14 + 6);
    return {
      family: 4,
      src: [...frame.subarray(26, 30)].join('.'),
      dst: [...frame.subarray(30, 34)].join('.'),
      id: frame.readUInt16BE(14 + 4),
      offset: (fo & 0x1fff) * 8,
      more: (fo & 0x2000) !== 0,
      ipChecksumOk: csumFinish(csumAdd(frame.subarray(14, 14 + ihl))) === 0,
      data: frame.subarray(14 + ihl, 14 + frame.readUInt16BE(14 + 2)),
      proto: frame[14 + 9]!,
    };
  }
  if (frame[14 + 6] !== IPV6_FRAGMENT) throw new Error('no fragment header');
  const fh = frame.subarray(54, 62);
  return {
    family: 6,
    src: formatIpv6(frame.subarray(22, 38)),
    dst: formatIpv6(frame.subarray(38, 54)),
    id: fh.readUInt32BE(4),
    offset: fh.readUInt16BE(2) & 0xfff8,
    more: (fh[3]! & 1) === 1,
    ipChecksumOk: true,
    data: frame.subarray(62, 54 + frame.readUInt16BE(14 + 4)),
    proto: fh[0]!,
  };
}

/** The datagram the fragments make, as one frame (for parsePacket, which checks the L4 checksum). */
export function reassemble(frames: Buffer[]): Buffer {
  const parts = frames.map((f) => ({ frame: f, info: fragmentInfo(f) })).sort((a, b) => a.info.offset - b.info.offset);
  const first = parts[0]!;
  const data = Buffer.concat(parts.map((p) => p.info.data));
  const eth = first.frame.subarray(0, 14);
  if (first.info.family === 4) {
    const h = Buffer.from(first.frame.subarray(14, 34));
    h.writeUInt16BE(20 + data.length, 2);
    h.writeUInt16BE(0, 6);
    h.writeUInt16BE(0, 10);
    h.writeUInt16BE(csumFinish(csumAdd(h)), 10);
    return Buffer.concat([eth, h, data]);
  }
  const h = Buffer.from(first.frame.subarray(14, 54));
  h[6] = first.info.proto;
  h.writeUInt16BE(data.length, 4);
  return Buffer.concat([eth, h, data]);
}
