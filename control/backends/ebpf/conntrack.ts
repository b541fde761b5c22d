// Connection tracking settings and garbage collection for the eBPF datapath. Timeouts follow
// kernel conntrack's per-state ones, with kube-proxy's conntrack.* settings where it has them;
// the table size follows kube-proxy's nf_conntrack_max rule. The datapath treats an expired
// entry as absent; this sweep removes expired flows (both directions together), keeps the
// direction that saw no packet alive while its partner lives, and tells which service and
// rev-NAT ids flows still refer to, so that freed ids are reused only when nothing names them.
import { CT, IPPROTO, type CtKey, type CtValue } from '../../bpf/layout.ts';
import type { BpfMap } from '../../bpf/map.ts';

export interface ConntrackTimeouts {
  tcpEstablishedNs: bigint;
  tcpSynNs: bigint;
  tcpCloseWaitNs: bigint;
  tcpClosedNs: bigint;
  udpNs: bigint;
  udpStreamNs: bigint;
}

const S = 1_000_000_000n;

/**
 * Kernel conntrack's defaults (nf_conntrack_tcp_timeout_syn_sent 120 s, time_wait 120 s,
 * nf_conntrack_udp_timeout 30 s, udp_timeout_stream 120 s) with kube-proxy's defaults where it
 * sets one (tcpEstablishedTimeout 24 h, tcpCloseWaitTimeout 1 h).
 */
export const DEFAULT_TIMEOUTS: ConntrackTimeouts = {
  tcpEstablishedNs: 86_400n * S,
  tcpSynNs: 120n * S,
  tcpCloseWaitNs: 3_600n * S,
  tcpClosedNs: 120n * S,
  udpNs: 30n * S,
  udpStreamNs: 120n * S,
};

/** kube-proxy's conntrack section (durations in seconds; 0 or absent: the default). */
export interface KubeProxyConntrack {
  maxPerCore?: number;
  min?: number;
  tcpEstablishedTimeoutSeconds?: number;
  tcpCloseWaitTimeoutSeconds?: number;
  udpTimeoutSeconds?: number;
  udpStreamTimeoutSeconds?: number;
}

export function conntrackTimeouts(c: KubeProxyConntrack = {}): ConntrackTimeouts {
  const pick = (s: number | undefined, dflt: bigint): bigint => (s !== undefined && s > 0 ? BigInt(Math.round(s)) * S : dflt);
  return {
    ...DEFAULT_TIMEOUTS,
    tcpEstablishedNs: pick(c.tcpEstablishedTimeoutSeconds, DEFAULT_TIMEOUTS.tcpEstablishedNs),
    tcpCloseWaitNs: pick(c.tcpCloseWaitTimeoutSeconds, DEFAULT_TIMEOUTS.tcpCloseWaitNs),
    udpNs: pick(c.udpTimeoutSeconds, DEFAULT_TIMEOUTS.udpNs),
    udpStreamNs: pick(c.udpStreamTimeoutSeconds, DEFAULT_TIMEOUTS.udpStreamNs),
  };
}

/**
 * Entries per connection tracking map: kube-proxy's nf_conntrack_max rule, max(maxPerCore * CPUs,
 * min) flows (defaults 32768 and 131072), two entries per flow.
 */
export function conntrackEntries(c: KubeProxyConntrack, cpus: number): number {
  const flows = Math.max((c.maxPerCore ?? 32768) * cpus, c.min ?? 131072);
  return 2 * flows;
}

/**
 * Entries of sy_ct_syn (handshakes in progress) beside CT maps of ctEntries: a quarter, so a SYN
 * flood churns them, never the established flows.
 */
export function handshakeEntries(ctEntries: number): number {
  return Math.max(16384, ctEntries >> 2);
}

/** The timeout of an entry, as the datapath's sy_ct_timeout computes it. */
export function entryTimeout(t: ConntrackTimeouts, flags: number, proto: number): bigint {
  if (proto === IPPROTO.TCP) {
    if (flags & CT.CLOSED) return t.tcpClosedNs;
    if (flags & CT.CLOSING) return t.tcpCloseWaitNs;
    if (flags & CT.ESTABLISHED) return t.tcpEstablishedNs;
    return t.tcpSynNs;
  }
  return flags & CT.ESTABLISHED ? t.udpStreamNs : t.udpNs;
}

/** What the sweep needs of the datapath's id tables to name a flow's other direction. */
export interface PartnerLookup {
  backend(id: number): { addr: string; port: number } | undefined;
  frontend(revNatId: number): { addr: string; port: number } | undefined;
}

/** The other direction's key, as sy_ct_partner (bpf/include/ct.h) derives it. */
export function partnerKey(k: CtKey, v: CtValue, ids: PartnerLookup): CtKey | undefined {
  const snat = (v.flags & CT.SNAT) !== 0;
  if (v.flags & CT.REPLY) {
    const fe = ids.frontend(v.revNatId);
    if (fe === undefined) return undefined;
    return { saddr: snat ? v.natAddr : k.daddr, sport: snat ? v.natPort : k.dport, daddr: fe.addr, dport: fe.port, proto: k.proto, family: k.family };
  }
  const be = ids.backend(v.backendId);
  if (be === undefined) return undefined;
  return { saddr: be.addr, sport: be.port, daddr: snat ? v.natAddr : k.saddr, dport: snat ? v.natPort : k.sport, proto: k.proto, family: k.family };
}

export interface SweepResult {
  /** Entries before and after the sweep. */
  before: number;
  after: number;
  deleted: number;
  /** Entries whose own direction was quiet while the flow lived, refreshed from their partner. */
  refreshed: number;
  /** Live entries of flows left to netfilter (SY_CT_HOST, takeover.ts). */
  host: number;
  /** Ids live entries refer to. */
  serviceIds: Set<number>;
  revNatIds: Set<number>;
}

/** Yields to the event loop between pages, so a sweep of a large table never stalls the agent. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * One garbage collection pass over one connection tracking map. `now` is CLOCK_MONOTONIC_COARSE
 * in ns (the datapath's clock).
 */
export async function sweep(map: BpfMap<CtKey, CtValue>, timeouts: ConntrackTimeouts, ids: PartnerLookup, now: bigint, pageSize = 4096): Promise<SweepResult> {
  const result: SweepResult = { before: 0, after: 0, deleted: 0, refreshed: 0, host: 0, serviceIds: new Set(), revNatIds: new Set() };
  const expired = (v: CtValue, proto: number): boolean => now - v.lastSeen > entryTimeout(timeouts, v.flags, proto);
  const doomed: CtKey[] = [];
  for await (const page of map.pages(pageSize)) {
    for (const [k, v] of page) {
      result.before++;
      if (!expired(v, k.proto)) {
        if (v.flags & CT.HOST) result.host++;
        result.serviceIds.add(v.serviceId);
        if (v.flags & CT.REPLY) result.revNatIds.add(v.revNatId);
        continue;
      }
      // This direction is quiet: the flow lives on while its other direction does.
      const pk = partnerKey(k, v, ids);
      const partner = pk === undefined ? undefined : map.get(pk);
      if (partner !== undefined && !expired(partner, k.proto)) {
        map.set(k, { ...v, lastSeen: partner.lastSeen > v.lastSeen ? partner.lastSeen : v.lastSeen, flags: v.flags | (partner.flags & (CT.ESTABLISHED | CT.CLOSING | CT.CLOSED)) });
        result.refreshed++;
        if (v.flags & CT.HOST) result.host++;
        result.serviceIds.add(v.serviceId);
        if (v.flags & CT.REPLY) result.revNatIds.add(v.revNatId);
        continue;
      }
      doomed.push(k);
    }
    await turn();
  }
  for (const k of doomed) if (map.delete(k)) result.deleted++;
  result.after = result.before - result.deleted;
  return result;
}
