// The datapath's flow hash (sy_flow_hash in bpf/include/lb.h), computed in TypeScript: with the
// Maglev table it predicts which backend a new flow gets.
import { encode } from '../../bpf/codec.ts';
import { addr16 } from '../../bpf/codec.ts';

function mix(h: number, v: number): number {
  let x = (h ^ v) >>> 0;
  x = Math.imul(x, 0x01000193) >>> 0;
  return (x ^ (x >>> 15)) >>> 0;
}

/** Ports as the program holds them: network-order bytes read as a little-endian u16. */
function rawPort(port: number): number {
  return ((port & 0xff) << 8) | (port >>> 8);
}

export function flowHash(t: { saddr: string; daddr: string; sport: number; dport: number; proto: number }): number {
  const s = encode(addr16, t.saddr);
  const d = encode(addr16, t.daddr);
  let h = 0x811c9dc5;
  for (let i = 0; i < 16; i += 4) h = mix(h, s.readUInt32LE(i));
  for (let i = 0; i < 16; i += 4) h = mix(h, d.readUInt32LE(i));
  h = mix(h, ((rawPort(t.sport) << 16) | rawPort(t.dport)) >>> 0);
  return mix(h, t.proto);
}
