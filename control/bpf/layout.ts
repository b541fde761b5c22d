// The TypeScript mirror of bpf/include/layout.h. test/bpf/layout.test.ts checks every
// struct listed in LAYOUTS against the BTF that clang emits, so a drift fails the tests.
import { addr16, array, be16, ipv4, ipv6, struct, u16, u32, u64, u8, withFamily, type StructCodec } from './codec.ts';

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

// ---- the datapath -------------------------------------------------------------------------

/** SY_LAYOUT_VERSION of layout.h; test/bpf/layout.test.ts checks they agree. */
export const LAYOUT_VERSION = 2;

export interface Meta {
  layoutVersion: number;
}

export const meta = struct<Meta>('sy_meta', [
  { name: 'layoutVersion', codec: u32 },
  { name: 'pad', codec: u32 },
]);

export const SCOPE = { EXTERNAL: 0, INTERNAL: 1 } as const;
export const ALGORITHM = { random: 0, maglev: 1 } as const;
export const FE = {
  CLUSTER_IP: 1 << 0,
  NODE_PORT: 1 << 1,
  LOAD_BALANCER: 1 << 2,
  EXTERNAL_IP: 1 << 3,
  REJECT: 1 << 4,
  MASQUERADE: 1 << 5,
  SOURCE_RANGES: 1 << 6,
  LOCAL: 1 << 7,
  HAS_INTERNAL: 1 << 8,
} as const;
export const BE = { TERMINATING: 1 << 0 } as const;
export const CT = { SNAT: 1 << 0, CLOSING: 1 << 1, REPLY: 1 << 2, ESTABLISHED: 1 << 3, FIN: 1 << 4, CLOSED: 1 << 5, NODE_SNAT: 1 << 6, HOST: 1 << 7 } as const;

/** enum sy_drop_reason: the index of sy_drops, by the label switchyard_datapath_drops_total uses. */
export const DROP_REASONS = ['no-backend', 'source-range', 'local-no-endpoint', 'snat-exhausted', 'ct-full', 'no-route', 'unsupported', 'frag-needed', 'ttl-exceeded', 'frag-no-first', 'unallocated-cluster-ip'] as const;
export const SY_DROP_MAX = 16;
export const RN = { NODE_ADDRESS: 1 << 0 } as const;

export interface FrontendKey {
  addr: string;
  port: number;
  proto: number;
  family: number;
  scope: number;
}

export interface FrontendValue {
  setId: number;
  revNatId: number;
  serviceId: number;
  affinityTimeout: number;
  count: number;
  algorithm: number;
  flags: number;
}

export interface SlotKey {
  setId: number;
  slot: number;
}

export interface Backend {
  addr: string;
  port: number;
  proto: number;
  family: number;
  flags: number;
  serviceId: number;
}

export interface RevNat {
  addr: string;
  port: number;
  family: number;
  flags: number;
}

export interface CtKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  family: number;
}

export interface CtValue {
  natAddr: string;
  natPort: number;
  flags: number;
  backendId: number;
  revNatId: number;
  serviceId: number;
  created: bigint;
  lastSeen: bigint;
}

export interface AffinityKey {
  serviceId: number;
  client: string;
}

export interface AffinityValue {
  backendId: number;
  lastSeen: bigint;
}

export interface SourceRangeKey {
  prefixlen: number;
  revNatId: number;
  addr: string;
}

export interface Counter {
  packets: bigint;
  bytes: bigint;
}

export interface DatapathConfig {
  nodeIp4: string;
  nodeIp6: string;
  snatPortMin: number;
  snatPortMax: number;
  flags: number;
  ctTimeoutTcpNs: bigint;
  ctTimeoutUdpNs: bigint;
  hostNetnsCookie: bigint;
  ctTimeoutTcpSynNs: bigint;
  ctTimeoutTcpFinNs: bigint;
  ctTimeoutTcpClosedNs: bigint;
  ctTimeoutUdpStreamNs: bigint;
}

export interface Clock {
  jiffies: bigint;
  ns: bigint;
}

export interface SockKey {
  cookie: bigint;
  addr: string;
  port: number;
  family: number;
}

export const frontendKey = withFamily(
  struct<FrontendKey>('sy_frontend_key', [
    { name: 'addr', codec: addr16 },
    { name: 'port', codec: be16 },
    { name: 'proto', codec: u8 },
    { name: 'family', codec: u8 },
    { name: 'scope', codec: u8 },
    { name: 'pad', codec: array(u8, 3) },
  ]),
  ['addr'],
);

export const frontendValue = struct<FrontendValue>('sy_frontend_value', [
  { name: 'setId', codec: u32 },
  { name: 'revNatId', codec: u32 },
  { name: 'serviceId', codec: u32 },
  { name: 'affinityTimeout', codec: u32 },
  { name: 'count', codec: u16 },
  { name: 'algorithm', codec: u8 },
  { name: 'pad', codec: u8 },
  { name: 'flags', codec: u32 },
]);

export const slotKey = struct<SlotKey>('sy_slot_key', [
  { name: 'setId', codec: u32 },
  { name: 'slot', codec: u32 },
]);

export const backend = withFamily(
  struct<Backend>('sy_backend', [
    { name: 'addr', codec: addr16 },
    { name: 'port', codec: be16 },
    { name: 'proto', codec: u8 },
    { name: 'family', codec: u8 },
    { name: 'flags', codec: u32 },
    { name: 'serviceId', codec: u32 },
  ]),
  ['addr'],
);

export const revNat = withFamily(
  struct<RevNat>('sy_revnat', [
    { name: 'addr', codec: addr16 },
    { name: 'port', codec: be16 },
    { name: 'family', codec: u8 },
    { name: 'flags', codec: u8 },
  ]),
  ['addr'],
);

export const ctKey = withFamily(
  struct<CtKey>('sy_ct_key', [
    { name: 'saddr', codec: addr16 },
    { name: 'daddr', codec: addr16 },
    { name: 'sport', codec: be16 },
    { name: 'dport', codec: be16 },
    { name: 'proto', codec: u8 },
    { name: 'family', codec: u8 },
    { name: 'pad', codec: array(u8, 2) },
  ]),
  ['saddr', 'daddr'],
);

export const ctValue = struct<CtValue>('sy_ct_value', [
  { name: 'natAddr', codec: addr16 },
  { name: 'natPort', codec: be16 },
  { name: 'flags', codec: u16 },
  { name: 'backendId', codec: u32 },
  { name: 'revNatId', codec: u32 },
  { name: 'serviceId', codec: u32 },
  { name: 'created', codec: u64 },
  { name: 'lastSeen', codec: u64 },
]);

export const affinityKey = struct<AffinityKey>('sy_affinity_key', [
  { name: 'serviceId', codec: u32 },
  { name: 'client', codec: addr16 },
]);

export const affinityValue = struct<AffinityValue>('sy_affinity_value', [
  { name: 'backendId', codec: u32 },
  { name: 'pad', codec: u32 },
  { name: 'lastSeen', codec: u64 },
]);

export const sourceRangeKey = struct<SourceRangeKey>('sy_source_range_key', [
  { name: 'prefixlen', codec: u32 },
  { name: 'revNatId', codec: u32 },
  { name: 'addr', codec: addr16 },
]);

export const counter = struct<Counter>('sy_counter', [
  { name: 'packets', codec: u64 },
  { name: 'bytes', codec: u64 },
]);

export const datapathConfig = struct<DatapathConfig>('sy_config', [
  { name: 'nodeIp4', codec: ipv4 },
  { name: 'nodeIp6', codec: ipv6 },
  { name: 'snatPortMin', codec: u16 },
  { name: 'snatPortMax', codec: u16 },
  { name: 'flags', codec: u32 },
  { name: 'ctTimeoutTcpNs', codec: u64 },
  { name: 'ctTimeoutUdpNs', codec: u64 },
  { name: 'hostNetnsCookie', codec: u64 },
  { name: 'ctTimeoutTcpSynNs', codec: u64 },
  { name: 'ctTimeoutTcpFinNs', codec: u64 },
  { name: 'ctTimeoutTcpClosedNs', codec: u64 },
  { name: 'ctTimeoutUdpStreamNs', codec: u64 },
]);

/** sy_clock[0]: the datapath's own cache of the coarse clock (user space only inspects it). */
export const clock = struct<Clock>('sy_clock', [
  { name: 'jiffies', codec: u64 },
  { name: 'ns', codec: u64 },
]);

export interface SockRevNatValue {
  revNatId: number;
  backendId: number;
  serviceId: number;
}

export const sockRevNatValue = struct<SockRevNatValue>('sy_sock_revnat_value', [
  { name: 'revNatId', codec: u32 },
  { name: 'backendId', codec: u32 },
  { name: 'serviceId', codec: u32 },
  { name: 'pad', codec: u32 },
]);

export interface FragKey {
  saddr: string;
  daddr: string;
  /** IPv4: the 16-bit identification; IPv6: the fragment header's 32-bit one. */
  id: number;
  proto: number;
  family: number;
}

export interface FragValue {
  sport: number;
  dport: number;
  tcpFlags: number;
}

export interface ServiceAddr {
  addr: string;
  family: number;
}

/** sy_frags: a datagram's first fragment's ports, for its later fragments (bpf/include/frag.h). */
export const fragKey = withFamily(
  struct<FragKey>('sy_frag_key', [
    { name: 'saddr', codec: addr16 },
    { name: 'daddr', codec: addr16 },
    { name: 'id', codec: u32 },
    { name: 'proto', codec: u8 },
    { name: 'family', codec: u8 },
    { name: 'pad', codec: array(u8, 2) },
  ]),
  ['saddr', 'daddr'],
);

export const fragValue = struct<FragValue>('sy_frag_value', [
  { name: 'sport', codec: be16 },
  { name: 'dport', codec: be16 },
  { name: 'tcpFlags', codec: u8 },
  { name: 'pad', codec: array(u8, 3) },
]);

/** sy_service_addrs: addresses only frontends use (ClusterIP, external IP, LB IP). */
export const serviceAddr = withFamily(
  struct<ServiceAddr>('sy_service_addr', [
    { name: 'addr', codec: addr16 },
    { name: 'family', codec: u8 },
    { name: 'pad', codec: array(u8, 3) },
  ]),
  ['addr'],
);

export interface ServiceCidrKey {
  prefixlen: number;
  family: number;
  addr: string;
}

/** sy_service_cidrs: the cluster's service CIDRs (LPM; prefixlen = 32 + the CIDR's prefix). */
export const serviceCidrKey = withFamily(
  struct<ServiceCidrKey>('sy_service_cidr_key', [
    { name: 'prefixlen', codec: u32 },
    { name: 'family', codec: u32 },
    { name: 'addr', codec: addr16 },
  ]),
  ['addr'],
);

export const sockKey = withFamily(
  struct<SockKey>('sy_sock_key', [
    { name: 'cookie', codec: u64 },
    { name: 'addr', codec: addr16 },
    { name: 'port', codec: be16 },
    { name: 'family', codec: u8 },
    { name: 'pad', codec: array(u8, 5) },
  ]),
  ['addr'],
);

/** Every struct of layout.h that has a TypeScript mirror. */
export const LAYOUTS: readonly StructCodec<object>[] = [
  skelFrontend,
  skelBackend,
  skelService,
  skelCounter,
  frontendKey,
  frontendValue,
  slotKey,
  backend,
  revNat,
  ctKey,
  ctValue,
  affinityKey,
  affinityValue,
  sourceRangeKey,
  counter,
  datapathConfig,
  clock,
  sockKey,
  sockRevNatValue,
  fragKey,
  fragValue,
  serviceAddr,
  serviceCidrKey,
  meta,
];

/** IP protocol numbers as the maps hold them. */
export const IPPROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;
