// The plan: every decision kube-proxy's rules make for a service port, made once. For each
// frontend (ClusterIP, external IP, LB IP, NodePort) and each source class (a pod of this node,
// the node itself, anything else) it says which endpoint set serves the packet, whether the
// source is masqueraded, or whether the packet is dropped or rejected. trace() and every
// compiler read these decisions; none of them decides again.
import type { DesiredState, EndpointState, FamilyState, FrontendKind, ModelConfig, ServicePortState } from './types.ts';

/** Where a packet comes from, as kube-proxy tells it. */
export type SourceClass = 'local-pod' | 'node' | 'other';
export const SOURCE_CLASSES: readonly SourceClass[] = ['local-pod', 'node', 'other'];

/**
 * The proxy mode whose answer to give where kube-proxy's modes differ: IPVS serves eTP Local
 * traffic from every source with the local endpoints (or the cluster ones, unmasqueraded) and
 * answers a virtual server without real servers with ICMP unreachable.
 */
export type PlanMode = 'ebpf' | 'iptables' | 'nftables' | 'ipvs';

export type Decision =
  | {
      action: 'FORWARD';
      /** Which endpoint set serves the packet. */
      policy: 'Cluster' | 'Local';
      endpoints: readonly EndpointState[];
      /** The backend sees the node's address (hairpin aside: a pod reaching itself always does). */
      masquerade: boolean;
      reason: string;
    }
  | {
      action: 'DROP' | 'REJECT';
      reason: string;
      /** Dropped because the traffic policy is Local and no endpoint is on this node. */
      noLocalEndpoint?: boolean;
    };

export interface FrontendPlan {
  kind: FrontendKind;
  address: string;
  port: number;
  /** The address is one of the node's own: answers leave with a node address as source. */
  nodeAddress: boolean;
  /** Sources allowed (loadBalancerSourceRanges plus the LB IPs where a node is in range); empty: all. */
  sourceRanges: readonly string[];
  bySource: Readonly<Record<SourceClass, Decision>>;
}

/** Endpoint sets a mode's rules must hold for a service port (kube-proxy's usesClusterEndpoints / usesLocalEndpoints). */
export interface EndpointUse {
  cluster: boolean;
  local: boolean;
}

export type SourceDecisions = Readonly<Record<SourceClass, Decision>>;

export interface ServicePortPlan {
  sp: ServicePortState;
  frontends: readonly FrontendPlan[];
  /**
   * The decisions per frontend kind the port has (they depend on the kind, not the address):
   * what rule modes read, since their rules match a kind (a NodePort rule matches every local
   * address, even when the node's addresses are not known yet).
   */
  byKind: Readonly<Partial<Record<FrontendKind, SourceDecisions>>>;
  /**
   * External traffic from elsewhere (not a local pod, not the node) is masqueraded when
   * forwarded: eTP Cluster. Known even when nothing is forwarded, since IPVS mode keeps the
   * addresses of eTP Local frontends in sets of their own whatever their endpoints.
   */
  masqueradesExternal: boolean;
  /** Sources allowed to the load-balancer IPs (loadBalancerSourceRanges plus the LB IPs where allowed); empty: all. */
  lbSourceRanges: readonly string[];
  use: EndpointUse;
}

const forward = (policy: 'Cluster' | 'Local', endpoints: readonly EndpointState[], masquerade: boolean, reason: string): Decision => ({ action: 'FORWARD', policy, endpoints, masquerade, reason });

/**
 * Which ClusterIP traffic is masqueraded: all of it (--masquerade-all), what does not come from a
 * local pod (when local traffic is detected at all), or none. A family-wide decision: IPVS mode
 * writes it as one rule for every service.
 */
export function clusterIPMasquerade(fs: FamilyState | undefined, config: ModelConfig): 'all' | 'not-local' | 'none' {
  if (config.masqueradeAll) return 'all';
  return fs !== undefined && fs.localDetector.mode !== 'None' ? 'not-local' : 'none';
}

/** The decision for one frontend kind and source class. Pure; the heart of kube-proxy's semantics. */
export function decide(sp: ServicePortState, fs: FamilyState, config: ModelConfig, kind: FrontendKind, source: SourceClass, mode: PlanMode = 'iptables'): Decision {
  if (!sp.hasAnyEndpoints) return { action: 'REJECT', reason: 'service has no endpoints' };
  const ipvs = mode === 'ipvs';
  if (kind === 'ClusterIP') {
    const m = clusterIPMasquerade(fs, config);
    const masquerade = m === 'all' || (m === 'not-local' && source !== 'local-pod');
    if (sp.internalPolicyLocal) {
      if (sp.localEndpoints.length > 0) return forward('Local', sp.localEndpoints, masquerade, 'internalTrafficPolicy Local');
      if (ipvs) return { action: 'REJECT', reason: 'internalTrafficPolicy Local and no endpoint on this node: a virtual server without real servers, which IPVS answers with ICMP port unreachable' };
      return { action: 'DROP', reason: 'internalTrafficPolicy Local and no endpoint on this node', noLocalEndpoint: true };
    }
    return forward('Cluster', sp.clusterEndpoints, masquerade, 'cluster IP');
  }
  // NodePort, external IP, load-balancer IP.
  if (sp.externalPolicyLocal && ipvs) {
    // One virtual server for every source: no short-circuit for pods or the node, no masquerade.
    if (sp.localEndpoints.length > 0) return forward('Local', sp.localEndpoints, false, 'externalTrafficPolicy Local: the local endpoints, for every source (IPVS mode)');
    if (source === 'other') return { action: 'DROP', noLocalEndpoint: true, reason: 'externalTrafficPolicy Local and no endpoint on this node: IPVS mode forwards to the cluster endpoints without SNAT, so their reply bypasses this node and the client never sees it' };
    return forward('Cluster', sp.clusterEndpoints, false, 'externalTrafficPolicy Local without a local endpoint: IPVS mode falls back to the cluster endpoints, unmasqueraded');
  }
  if (sp.externalPolicyLocal) {
    if (source === 'local-pod') return forward('Cluster', sp.clusterEndpoints, false, 'pod traffic to an external destination short-circuits to the cluster endpoints');
    if (source === 'node') return forward('Cluster', sp.clusterEndpoints, true, 'node traffic to an external destination is masqueraded and uses the cluster endpoints');
    if (sp.localEndpoints.length === 0) return { action: 'DROP', reason: 'externalTrafficPolicy Local and no endpoint on this node', noLocalEndpoint: true };
    return forward('Local', sp.localEndpoints, false, 'externalTrafficPolicy Local keeps the client address');
  }
  return forward('Cluster', sp.clusterEndpoints, true, 'externalTrafficPolicy Cluster masquerades external traffic');
}

function sourceRanges(sp: ServicePortState, kind: FrontendKind): string[] {
  if (kind !== 'LoadBalancer' || sp.loadBalancerSourceRanges.length === 0) return [];
  const host = sp.family === 4 ? 32 : 128;
  return [...sp.loadBalancerSourceRanges, ...(sp.sourceRangesAllowLbIp ? sp.loadBalancerIPs.map((ip) => `${ip}/${host}`) : [])];
}

/** The loopback address eBPF mode serves NodePorts on with localhostNodePorts (IPv4 only, as kube-proxy). */
export const LOCALHOST_NODE_PORT_ADDRESS = '127.0.0.1';

/** The addresses NodePorts listen on: the listed ones, or every node IP. */
export function nodePortAddressList(fs: FamilyState): readonly string[] {
  return fs.nodePortAddresses.all ? fs.nodeIPs : fs.nodePortAddresses.addresses;
}

/** The plan of one service port: every frontend with its decisions per source class. */
export function planServicePort(sp: ServicePortState, fs: FamilyState, config: ModelConfig, mode: PlanMode = 'iptables'): ServicePortPlan {
  const nodeIPs = new Set(fs.nodeIPs);
  const byKind: Partial<Record<FrontendKind, SourceDecisions>> = {};
  const decisions = (kind: FrontendKind): SourceDecisions => {
    const d = (source: SourceClass): Decision => decide(sp, fs, config, kind, source, mode);
    return (byKind[kind] ??= { 'local-pod': d('local-pod'), node: d('node'), other: d('other') });
  };
  const frontend = (kind: FrontendKind, address: string, port: number): FrontendPlan => ({ kind, address, port, nodeAddress: kind === 'NodePort' || nodeIPs.has(address), sourceRanges: sourceRanges(sp, kind), bySource: decisions(kind) });
  decisions('ClusterIP');
  if (sp.externalIPs.length > 0) decisions('ExternalIP');
  if (sp.loadBalancerIPs.length > 0) decisions('LoadBalancer');
  if (sp.nodePort !== 0) decisions('NodePort');
  const frontends: FrontendPlan[] = [frontend('ClusterIP', sp.clusterIP, sp.port)];
  for (const ip of sp.externalIPs) frontends.push(frontend('ExternalIP', ip, sp.port));
  for (const ip of sp.loadBalancerIPs) frontends.push(frontend('LoadBalancer', ip, sp.port));
  if (sp.nodePort !== 0) for (const ip of nodePortAddressList(fs)) frontends.push(frontend('NodePort', ip, sp.nodePort));
  // localhostNodePorts: eBPF mode serves 127.0.0.1:NodePort at the node's own sockets (the
  // cgroup connect hook); the rule modes match loopback in their NodePort dispatch instead.
  if (sp.nodePort !== 0 && mode === 'ebpf' && fs.nodePortAddresses.localhost === true && !nodePortAddressList(fs).includes(LOCALHOST_NODE_PORT_ADDRESS)) frontends.push(frontend('NodePort', LOCALHOST_NODE_PORT_ADDRESS, sp.nodePort));
  // kube-proxy: externally accessible ports need the cluster endpoints (pods short-circuit to
  // them); the local ones serve iTP Local and eTP Local external traffic.
  const use: EndpointUse = {
    cluster: !sp.internalPolicyLocal || sp.externallyAccessible,
    local: sp.internalPolicyLocal || (sp.externallyAccessible && sp.externalPolicyLocal),
  };
  return { sp, frontends, byKind, masqueradesExternal: !sp.externalPolicyLocal, lbSourceRanges: sourceRanges(sp, 'LoadBalancer'), use };
}

/** Plans for every service port of every family (what a full compile reads). */
export function planState(state: DesiredState, mode: PlanMode = 'iptables'): Map<string, { fs: FamilyState; plan: ServicePortPlan }> {
  const out = new Map<string, { fs: FamilyState; plan: ServicePortPlan }>();
  for (const fs of state.families.values()) for (const sp of fs.servicePorts.values()) out.set(sp.key, { fs, plan: planServicePort(sp, fs, state.config, mode) });
  return out;
}

export const isForward = (d: Decision): d is Extract<Decision, { action: 'FORWARD' }> => d.action === 'FORWARD';

/** Frontend kinds reached from outside; the chain-based modes give them one external chain. */
export const EXTERNAL_KINDS = ['ExternalIP', 'LoadBalancer', 'NodePort'] as const;

/** What kube-proxy's chain-based layouts (iptables, nftables) need to know of a plan. */
export interface ChainUse {
  internal: SourceDecisions;
  /** The external kinds this port has. */
  kinds: Array<(typeof EXTERNAL_KINDS)[number]>;
  /** Their decisions: the traffic policy applies to them alike, so the first one's stand for all. */
  external: SourceDecisions | undefined;
  /**
   * The external chain exists whenever some source is forwarded: even without external endpoints
   * it carries the short-circuits for pod and node traffic (kube-proxy's usesExternalTrafficChain).
   */
  usesExternalChain: boolean;
  forwardsSomething: boolean;
  /** An LB IP with loadBalancerSourceRanges: a firewall chain. */
  firewall: boolean;
}

export function chainUse(plan: ServicePortPlan): ChainUse {
  const internal = plan.byKind.ClusterIP!;
  const kinds = EXTERNAL_KINDS.filter((k) => plan.byKind[k] !== undefined);
  const external = kinds.length > 0 ? plan.byKind[kinds[0]!]! : undefined;
  const forwardsAny = (d: SourceDecisions): boolean => SOURCE_CLASSES.some((c) => isForward(d[c]));
  const usesExternalChain = external !== undefined && forwardsAny(external);
  return { internal, kinds, external, usesExternalChain, forwardsSomething: forwardsAny(internal) || usesExternalChain, firewall: plan.byKind.LoadBalancer !== undefined && plan.lbSourceRanges.length > 0 };
}

/**
 * Why the eBPF datapath leaves one SCTP frontend (kind, port) to the rule modes, or undefined when
 * it serves it. SCTP's CRC32c covers no pseudo-header, so translating addresses leaves it valid,
 * but a new port would void it: only frontends whose port is every endpoint's port are served
 * (SNAT then keeps the client's port). Here so that the compiler and `trace` say the same.
 */
export function ebpfSctpUnsupported(sp: ServicePortState, kind: FrontendKind, port: number): string | undefined {
  if (sp.protocol !== 'SCTP') return undefined;
  const targets = [...new Set(sp.endpoints.map((ep) => ep.port))].filter((p) => p !== port).sort((a, b) => a - b);
  if (targets.length === 0) return undefined;
  const what = kind === 'NodePort' ? `SCTP NodePort ${port}` : `SCTP port ${port}`;
  return `${what} -> target ${targets.join(', ')}: the eBPF datapath translates SCTP addresses only (its CRC32c would not cover a new port); left to the rule modes`;
}

/**
 * Traffic to an unallocated ClusterIP: an address in the family's service CIDRs that no Service
 * holds. kube-proxy's nftables mode drops it (cluster-ips-check, fed by ServiceCIDR objects), and
 * so does the eBPF datapath, which follows kube-proxy's newest mode; iptables and IPVS modes have
 * no such rule (their OnServiceCIDRsChanged does nothing) and let it pass. Only the address counts:
 * a ClusterIP that exists, reached on a port it does not serve, keeps its own verdict (REJECT in
 * nftables and IPVS mode, passed in the others), and so do external and LB IPs inside the ranges.
 * Returns the CIDRs whose unallocated addresses this mode drops (none: nothing dropped).
 */
export function unallocatedDropCIDRs(fs: FamilyState, mode: PlanMode): readonly string[] {
  return mode === 'nftables' || mode === 'ebpf' ? (fs.serviceCIDRs ?? []) : [];
}

/**
 * Whether a mode that drops unallocated ClusterIPs does so for traffic from this source. nftables
 * mode drops in its forward and output chains alike. The eBPF datapath decides where it looks
 * services up, on the way in from pods and from outside; the node's own packets meet only its
 * socket hooks (which can refuse, not drop) and its egress programs (which look no service up, so
 * that the traffic they carry pays nothing for it): they leave as in iptables mode.
 */
export function dropsUnallocatedFrom(mode: PlanMode, source: SourceClass): boolean {
  return mode === 'nftables' || (mode === 'ebpf' && source !== 'node');
}

/** Every family's CIDRs of unallocatedDropCIDRs (what a datapath of both families is given). */
export function unallocatedDropCIDRsOf(state: DesiredState, mode: PlanMode): string[] {
  return [...state.families.values()].flatMap((fs) => unallocatedDropCIDRs(fs, mode));
}

/**
 * Whether an address in the service CIDRs is allocated, as the mode tells: nftables mode by its
 * cluster-ips set (ClusterIPs alone), the eBPF datapath by sy_service_addrs (ClusterIPs, external
 * and LB IPs).
 */
export function isServiceAddress(fs: FamilyState, address: string, mode: PlanMode): boolean {
  for (const sp of fs.servicePorts.values()) {
    if (sp.clusterIP === address) return true;
    if (mode !== 'nftables' && (sp.externalIPs.includes(address) || sp.loadBalancerIPs.includes(address))) return true;
  }
  return false;
}
