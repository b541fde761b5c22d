// The TypeScript mirror of bpf/include/layout.h. test/bpf/layout.test.ts checks every
// struct listed in LAYOUTS against the BTF that clang emits, so a drift fails the tests.
import { array, be16, ipv4, struct, u16, u32, u64, u8, type StructCodec } from './codec.ts';

export const SY_SKEL_MAX_BACKENDS = 8;

/** Indexes of skel_stats (enum sy_skel_stat). */
export const SKEL_STAT = { FORWARD: 0, REVERSE: 1, XDP: 2, MAX: 3 } as const;

export interface SkelFrontend {
  addr: string;
  port: number;
  proto: number;
}

export interface SkelBackend {
  addr: string;
  port: number;
}

export interface SkelService {
  count: number;
  backends: SkelBackend[];
}

export interface SkelCounter {
  packets: bigint;
  bytes: bigint;
}

export const skelFrontend = struct<SkelFrontend>('sy_skel_frontend', [
  { name: 'addr', codec: ipv4 },
  { name: 'port', codec: be16 },
  { name: 'proto', codec: u8 },
  { name: 'pad', codec: u8 },
]);

export const skelBackend = struct<SkelBackend>('sy_skel_backend', [
  { name: 'addr', codec: ipv4 },
  { name: 'port', codec: be16 },
  { name: 'pad', codec: u16 },
]);

export const skelService = struct<SkelService>('sy_skel_service', [
  { name: 'count', codec: u32 },
  { name: 'backends', codec: array(skelBackend, SY_SKEL_MAX_BACKENDS) },
]);

export const skelCounter = struct<SkelCounter>('sy_skel_counter', [
  { name: 'packets', codec: u64 },
  { name: 'bytes', codec: u64 },
]);

/** Every struct of layout.h that has a TypeScript mirror. */
export const LAYOUTS: readonly StructCodec<object>[] = [skelFrontend, skelBackend, skelService, skelCounter];

/** IP protocol numbers as the maps hold them. */
export const IPPROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
