// trace: the verdict for one packet, read from the desired state — the same state every
// backend compiles, so the datapath tests in every mode are held against this answer.
// Mirrors kube-proxy's rule order: ClusterIP, external IPs and LB IPs first, NodePorts last;
// LB source ranges before endpoints; REJECT without any endpoint, DROP without a local one.
import { anyContains, canonicalIp, cidrContains, familyOf, parseCidr, type Cidr } from '../model/ip.ts';
import { decide, dropsUnallocatedFrom, ebpfSctpUnsupported, isServiceAddress, unallocatedDropCIDRs, type PlanMode, type SourceClass } from '../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, FrontendKind, Protocol, ServicePortState } from '../model/types.ts';

export interface TracePacket {
  src: string;
  dst: string;
  port: number;
  protocol: Protocol;
  /** The interface the packet arrived on; needed only for interface-based local detection. */
  inInterface?: string;
}

/** Where the packet comes from, as kube-proxy tells it: this node, one of its pods, or elsewhere. */
export type SourceKind = SourceClass;

export interface TraceEndpoint {
  ip: string;
  port: number;
  nodeName: string;
  local: boolean;
  terminating: boolean;
  /** Share of new flows this endpoint gets. */
  weight: number;
  /** The backend sees the node's address, not the client's (masquerade, or hairpin). */
  sourceTranslated: boolean;
}

export interface TraceFrontend {
  kind: FrontendKind;
  address: string;
  port: number;
}

export type TraceVerdict =
  | {
      verdict: 'FORWARD';
      servicePort: string;
      key: string;
      frontend: TraceFrontend;
      protocol: Protocol;
      source: SourceKind;
      /** Which endpoint set serves this packet. */
      policy: 'Cluster' | 'Local';
      endpoints: TraceEndpoint[];
      affinityTimeoutSeconds: number;
      algorithm: string;
      reason: string;
    }
  | {
      verdict: 'DROP' | 'REJECT';
      servicePort: string;
      key: string;
      frontend: TraceFrontend;
      protocol: Protocol;
      source: SourceKind;
      reason: string;
    }
  | {
      /** To an unallocated ClusterIP: inside the service CIDRs, held by no Service (plan.ts unallocatedDropCIDRs). */
      verdict: 'DROP';
      unallocated: true;
      /** The service CIDR the destination is in, and where the CIDRs come from. */
      serviceCIDR: string;
      serviceCIDRSource: string;
      protocol: Protocol;
      source: SourceKind;
      reason: string;
    }
  | { verdict: 'NO_SERVICE'; reason: string };

interface Match {
  sp: ServicePortState;
  frontend: TraceFrontend;
}

function findFrontend(fs: FamilyState, dst: string, port: number, protocol: Protocol, mode: PlanMode): Match | undefined {
  const ports = [...fs.servicePorts.values()].filter((sp) => sp.protocol === protocol);
  for (const sp of ports) {
    if (sp.port !== port) continue;
    if (sp.clusterIP === dst) return { sp, frontend: { kind: 'ClusterIP', address: dst, port } };
    if (sp.externalIPs.includes(dst)) return { sp, frontend: { kind: 'ExternalIP', address: dst, port } };
    if (sp.loadBalancerIPs.includes(dst)) return { sp, frontend: { kind: 'LoadBalancer', address: dst, port } };
  }
  // Loopback: served with localhostNodePorts in iptables mode (all of 127.0.0.0/8 where every
  // local address is a NodePort address) and eBPF mode (127.0.0.1); never in nftables or IPVS mode.
  const loopback = familyOf(dst) === 4 ? dst.startsWith('127.') : dst === '::1';
  const localhost = fs.nodePortAddresses.localhost === true && (mode === 'iptables' ? fs.nodePortAddresses.all || dst === '127.0.0.1' : mode === 'ebpf' && dst === '127.0.0.1');
  const nodePortAddress = loopback ? localhost : fs.nodePortAddresses.all ? fs.nodeIPs.includes(dst) : fs.nodePortAddresses.addresses.includes(dst);
  if (!nodePortAddress) return undefined;
  const sp = ports.find((p) => p.nodePort === port);
  return sp === undefined ? undefined : { sp, frontend: { kind: 'NodePort', address: dst, port } };
}

export function sourceKind(fs: FamilyState, src: string, inInterface: string | undefined): SourceKind {
  if (fs.nodeIPs.includes(src) || src === '127.0.0.1' || src === '::1') return 'node';
  const d = fs.localDetector;
  if (d.mode === 'ClusterCIDR' || d.mode === 'NodeCIDR') {
    const cidrs = d.cidrs.map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined);
    return anyContains(cidrs, src) ? 'local-pod' : 'other';
  }
  if (d.mode === 'BridgeInterface') return inInterface === d.interfaceName ? 'local-pod' : 'other';
  if (d.mode === 'InterfaceNamePrefix') return inInterface?.startsWith(d.interfaceName) ? 'local-pod' : 'other';
  return 'other';
}

function sourceAllowed(sp: ServicePortState, src: string): boolean {
  if (sp.loadBalancerSourceRanges.length === 0) return true;
  const ranges = sp.loadBalancerSourceRanges.map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined);
  if (anyContains(ranges, src)) return true;
  // A node inside the ranges may reach the LB IP with the LB IP itself as source.
  return sp.sourceRangesAllowLbIp && sp.loadBalancerIPs.includes(src);
}

function candidates(endpoints: readonly EndpointState[], src: string, masquerade: boolean): TraceEndpoint[] {
  return endpoints.map((ep) => ({
    ip: ep.ip,
    port: ep.port,
    nodeName: ep.nodeName,
    local: ep.local,
    terminating: ep.terminating,
    weight: 1 / endpoints.length,
    // Hairpin: an endpoint reaching itself through the service is always masqueraded.
    sourceTranslated: masquerade || ep.ip === src,
  }));
}

export interface TraceOptions {
  /**
   * The proxy mode whose answer to give; the modes differ where kube-proxy's do:
   * - nftables rejects traffic to a ClusterIP on a port or protocol it does not serve;
   * - ipvs rejects that for every address on kube-ipvs0 (ClusterIPs, external and LB IPs); a
   *   service port without a usable endpoint is a virtual server without real servers, which
   *   IPVS answers with ICMP port unreachable (REJECT where the others DROP); external traffic
   *   under eTP Local goes to the local endpoints for every source, or to the cluster ones
   *   (unmasqueraded) when there is none; the others let it pass.
   */
  mode?: string;
}

function planMode(mode: string | undefined): PlanMode {
  return mode === 'ipvs' || mode === 'nftables' || mode === 'ebpf' ? mode : 'iptables';
}

export function trace(state: DesiredState, packet: TracePacket, options: TraceOptions = {}): TraceVerdict {
  const src = canonicalIp(packet.src);
  const dst = canonicalIp(packet.dst);
  if (src === undefined || dst === undefined) return { verdict: 'NO_SERVICE', reason: `not an IP address: ${src === undefined ? packet.src : packet.dst}` };
  const family = familyOf(dst)!;
  if (familyOf(src) !== family) return { verdict: 'NO_SERVICE', reason: 'source and destination are of different IP families' };
  const fs = state.families.get(family);
  if (fs === undefined) return { verdict: 'NO_SERVICE', reason: `IPv${family} is not proxied` };
  const match = findFrontend(fs, dst, packet.port, packet.protocol, planMode(options.mode));
  const source = sourceKind(fs, src, packet.inInterface);
  if (match === undefined) {
    const ports = [...fs.servicePorts.values()];
    const owner =
      options.mode === 'nftables'
        ? ports.find((sp) => sp.clusterIP === dst)
        : options.mode === 'ipvs'
          ? ports.find((sp) => sp.clusterIP === dst || sp.externalIPs.includes(dst) || sp.loadBalancerIPs.includes(dst))
          : undefined;
    if (owner !== undefined) {
      const kind: FrontendKind = owner.clusterIP === dst ? 'ClusterIP' : owner.externalIPs.includes(dst) ? 'ExternalIP' : 'LoadBalancer';
      const frontend: TraceFrontend = { kind, address: dst, port: packet.port };
      return { verdict: 'REJECT', servicePort: owner.servicePortName, key: owner.key, frontend, protocol: packet.protocol, source, reason: `${options.mode} mode rejects new connections to service address ${dst} on a port it does not serve` };
    }
    const loopback = family === 4 ? dst.startsWith('127.') : dst === '::1';
    if (loopback && ports.some((sp) => sp.protocol === packet.protocol && sp.nodePort === packet.port)) {
      const why =
        family === 6 ? 'NodePorts are never served on IPv6 loopback (as in kube-proxy)'
        : planMode(options.mode) === 'nftables' || planMode(options.mode) === 'ipvs' ? `${planMode(options.mode)} mode does not serve NodePorts on localhost (as kube-proxy's)`
        : fs.nodePortAddresses.localhost !== true ? 'localhost NodePorts are off (iptables.localhostNodePorts false, or nodePortAddresses leaves out 127.0.0.1)'
        : `eBPF mode serves localhost NodePorts on 127.0.0.1 only`;
      return { verdict: 'NO_SERVICE', reason: `${dst}:${packet.port}/${packet.protocol} is a NodePort on loopback: ${why}` };
    }
    // Only the address decides (the owner check above kept a ClusterIP's unserved ports as they were).
    const mode = planMode(options.mode);
    const range = fs.serviceCIDRs?.find((c) => {
      const cidr = parseCidr(c);
      return cidr !== undefined && cidrContains(cidr, dst);
    });
    if (range !== undefined && !isServiceAddress(fs, dst, mode)) {
      if (unallocatedDropCIDRs(fs, mode).includes(range) && dropsUnallocatedFrom(mode, source)) {
        const from = state.serviceCIDRSource === 'ServiceCIDR' ? 'ServiceCIDR objects' : 'the configured serviceCIDRs';
        return {
          verdict: 'DROP',
          unallocated: true,
          serviceCIDR: range,
          serviceCIDRSource: state.serviceCIDRSource ?? 'none',
          protocol: packet.protocol,
          source,
          reason: `${dst} is an unallocated ClusterIP: inside service CIDR ${range} (from ${from}) and held by no Service; ${mode} mode drops it, as kube-proxy's nftables cluster-ips-check`,
        };
      }
      const why = mode === 'ebpf' ? 'eBPF mode drops it from pods and from outside, not from the node itself' : `${mode} mode lets it pass, as kube-proxy's`;
      return { verdict: 'NO_SERVICE', reason: `no service port for ${dst}:${packet.port}/${packet.protocol} (an unallocated ClusterIP in ${range}: ${why})` };
    }
    return { verdict: 'NO_SERVICE', reason: `no service port for ${dst}:${packet.port}/${packet.protocol}` };
  }
  const { sp, frontend } = match;
  // eBPF mode leaves SCTP frontends that would need a new port untranslated (as the agent logs).
  const sctp = planMode(options.mode) === 'ebpf' ? ebpfSctpUnsupported(sp, frontend.kind, frontend.port) : undefined;
  if (sctp !== undefined) return { verdict: 'NO_SERVICE', reason: `${sp.servicePortName} ${frontend.kind} ${dst}:${packet.port}/SCTP is not programmed: ${sctp}` };
  const base = { servicePort: sp.servicePortName, key: sp.key, frontend, protocol: sp.protocol, source };
  if (frontend.kind === 'LoadBalancer' && !sourceAllowed(sp, src)) {
    return { verdict: 'DROP', ...base, reason: `source ${src} is outside loadBalancerSourceRanges` };
  }
  // The decision is the plan's (control/model/plan.ts), the same every compiler reads.
  const d = decide(sp, fs, state.config, frontend.kind, source, planMode(options.mode));
  if (d.action !== 'FORWARD') return { verdict: d.action, ...base, reason: d.reason };
  return {
    verdict: 'FORWARD',
    ...base,
    policy: d.policy,
    endpoints: candidates(d.endpoints, src, d.masquerade),
    affinityTimeoutSeconds: sp.affinityTimeoutSeconds,
    algorithm: sp.algorithm,
    reason: d.reason,
  };
}
