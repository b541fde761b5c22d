// The HNS compiler (pure): the plan of a service port -> the HCN load balancers kube-proxy's
// winkernel proxier makes for it, and the remote endpoints they need. It reads the plan's
// decisions (control/model/plan.ts) and decides nothing: an HCN load balancer matches on
// destination only and holds one endpoint set for every source, so it is built from the
// decision of the source class that frontend serves (pods for a cluster IP, outside clients
// for NodePorts, external and LB IPs), and every decision of another source class that the
// load balancer cannot reproduce is listed as unsupported with the reason, never silently
// changed.
import { createHash } from 'node:crypto';
import { anyContains, familyOf, hostPort, ipToBigInt, parseCidr, type Cidr, type Family } from '../../model/ip.ts';
import { SOURCE_CLASSES, planServicePort, type Decision, type FrontendPlan, type ServicePortPlan, type SourceClass } from '../../model/plan.ts';
import type { DesiredState, EndpointState, FamilyState, FrontendKind } from '../../model/types.ts';
import { DISTRIBUTION, ENDPOINT_FLAGS, LB_FLAGS, PORT_MAPPING_FLAGS, PROTOCOL_NUMBER, SCHEMA_V2, type HostComputeEndpoint, type HostComputeLoadBalancer } from './hcn-types.ts';
import { vfpKeepsClientAddress } from './vfp.ts';
import type { WinkernelConfig } from './winkernel-config.ts';

/** What the compiler needs to know of the HNS network (the adapter reads it from HCN). */
export interface HnsNetworkFacts {
  /** "L2Bridge" or "Overlay" (anything else is treated as L2Bridge, as kube-proxy does). */
  type: string;
  /** Overlay: the RemoteSubnetRoute policies, which give a remote pod's provider address. */
  remoteSubnets: ReadonlyArray<{ destinationPrefix: string; providerAddress: string }>;
}

export interface HnsCompileOptions {
  winkernel: WinkernelConfig;
  network: HnsNetworkFacts;
  /** kube-proxy's node IP per family (the SourceVIP fallback and the overlay provider address). */
  nodeIPs: Readonly<Partial<Record<Family, string>>>;
  /** The host's MAC ("00-15-5d-..."), for the overlay service-VIP endpoint. */
  hostMac: string;
  /** kube-proxy's healthz port, the health-check LB's port for services without healthCheckNodePort. */
  healthzPort: number;
}

/** An endpoint a load balancer points at: a pod by IP (local ones exist already; remote ones are made), or an endpoint by name. */
export type EndpointRef = { kind: 'ip'; ip: string; local: boolean } | { kind: 'name'; name: string };

export interface LoadBalancerSpec {
  /** The load balancer's place within its service port, stable across syncs: "ClusterIP", "NodePort", "ExternalIP 1.2.3.4", ... */
  slot: string;
  frontend: FrontendKind | 'HealthCheck';
  /** "" for NodePorts: kube-proxy's NodePort load balancer has no FrontendVIPs and serves every host address. */
  vip: string;
  protocol: number;
  internalPort: number;
  externalPort: number;
  endpoints: readonly EndpointRef[];
  sourceVip: string;
  flags: number;
  portFlags: number;
  distribution: number;
}

export interface RemoteEndpointSpec {
  ip: string;
  macAddress: string;
  /** Overlay networks: where the remote pod's node is (a ProviderAddress policy). */
  providerAddress?: string;
}

export interface Unsupported {
  servicePort: string;
  /** "10.96.0.10:80 ClusterIP" */
  frontend: string;
  sources: readonly SourceClass[];
  reason: string;
}

export interface PortCompile {
  key: string;
  servicePort: string;
  loadBalancers: LoadBalancerSpec[];
  remoteEndpoints: RemoteEndpointSpec[];
  unsupported: Unsupported[];
}

/** kube-proxy's conjureMac: a MAC made from the prefix and the address, for remote endpoints (never sent on the wire). */
export function conjureMac(prefix: string, ip: string): string {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  if (familyOf(ip) === 4) return `${prefix}-${ip.split('.').map((o) => hex(Number(o))).join('-')}`;
  if (familyOf(ip) === 6) {
    const v = ipToBigInt(ip);
    const byte = (i: number): number => Number((v >> BigInt(8 * (15 - i))) & 0xffn);
    return `${prefix}-${[15, 14, 13, 12].map((i) => hex(byte(i))).join('-')}`;
  }
  return '02-11-22-33-44-55';
}

const isOverlay = (n: HnsNetworkFacts): boolean => n.type.toLowerCase() === 'overlay';

/** Overlay: the provider address of the remote subnet holding ip, or undefined (an address outside the cluster). */
function providerAddressOf(network: HnsNetworkFacts, ip: string): string | undefined {
  for (const rs of network.remoteSubnets) {
    const cidr = parseCidr(rs.destinationPrefix);
    if (cidr !== undefined && anyContains([cidr] as Cidr[], ip)) return rs.providerAddress;
  }
  return undefined;
}

/** The source class each frontend kind serves, whose decision its load balancer is built from. */
const PRIMARY: Record<FrontendKind, SourceClass> = { ClusterIP: 'local-pod', NodePort: 'other', ExternalIP: 'other', LoadBalancer: 'other' };

const endpointList = (eps: readonly EndpointState[]): string => eps.map((e) => hostPort(e.ip, e.port)).join(',');

function describe(f: FrontendPlan): string {
  return `${hostPort(f.address, f.port)} ${f.kind}`;
}

interface FrontendResult {
  lb: LoadBalancerSpec | undefined;
  unsupported: Unsupported[];
}

/** One frontend (for NodePorts: all of them, as one load balancer) -> its load balancer and what it cannot honour. */
function compileFrontend(plan: ServicePortPlan, f: FrontendPlan, o: HnsCompileOptions, sourceVip: string, nodePortAddressesAll: boolean): FrontendResult {
  const sp = plan.sp;
  const unsupported: Unsupported[] = [];
  const limit = (sources: readonly SourceClass[], reason: string): void => {
    unsupported.push({ servicePort: sp.servicePortName, frontend: f.kind === 'NodePort' ? `*:${f.port} NodePort` : describe(f), sources, reason });
  };
  const primary = f.bySource[PRIMARY[f.kind]];
  // kube-proxy's localTrafficDSR: with enableDSR, an external frontend whose outside clients the
  // plan does not masquerade (eTP Local) keeps their address by Direct Server Return.
  const dsr = o.winkernel.enableDSR && f.kind !== 'ClusterIP' && primary.action === 'FORWARD' && !primary.masquerade;
  let lb: LoadBalancerSpec | undefined;
  if (primary.action === 'FORWARD' && primary.endpoints.length > 0) {
    const ports = new Set(primary.endpoints.map((e) => e.port));
    if (ports.size > 1) limit(SOURCE_CLASSES, `endpoints listen on different ports (${[...ports].join(', ')}); an HCN load balancer has one InternalPort, so only port ${primary.endpoints[0]!.port} is used (as kube-proxy's winkernel does)`);
    const external = f.kind !== 'ClusterIP';
    lb = {
      slot: f.kind === 'ClusterIP' || f.kind === 'NodePort' ? f.kind : `${f.kind} ${f.address}`,
      frontend: f.kind,
      vip: f.kind === 'NodePort' ? '' : f.address,
      protocol: PROTOCOL_NUMBER[sp.protocol],
      internalPort: primary.endpoints[0]!.port,
      externalPort: f.port,
      endpoints: primary.endpoints.map((e) => ({ kind: 'ip', ip: e.ip, local: e.local })),
      sourceVip,
      flags: (f.kind === 'ClusterIP' ? (o.winkernel.enableDSR ? LB_FLAGS.DSR : 0) : dsr ? LB_FLAGS.DSR : 0) | (sp.family === 6 ? LB_FLAGS.IPv6 : 0),
      portFlags: (external ? PORT_MAPPING_FLAGS.VipExternalIP : 0) | (f.kind === 'NodePort' ? PORT_MAPPING_FLAGS.LocalRoutedVIP : 0),
      distribution: sp.affinityTimeoutSeconds > 0 ? DISTRIBUTION.SourceIP : DISTRIBUTION.None,
    };
  }
  for (const source of SOURCE_CLASSES) {
    const d: Decision = f.bySource[source];
    if (lb === undefined) {
      if (d.action === 'FORWARD') limit([source], `the plan forwards this source (${d.reason}), but the load balancer follows the ${PRIMARY[f.kind]} decision (${primary.reason}) and HCN matches on destination only, so there is none`);
      else if (d.action === 'REJECT') limit([source], `${d.reason}: kube-proxy's winkernel programs no load balancer, and HCN cannot answer with a TCP reset or ICMP unreachable; the packet goes unanswered`);
      else if (f.nodeAddress) limit([source], `${d.reason}: with no load balancer the node's own stack receives the packet (and refuses it if nothing listens) instead of dropping it`);
      continue;
    }
    if (d.action !== 'FORWARD') {
      limit([source], `the plan says ${d.action} (${d.reason}), but HCN matches on destination only and the load balancer built for ${PRIMARY[f.kind]} traffic serves this source too`);
      continue;
    }
    if (endpointList(d.endpoints) !== endpointList(primary.action === 'FORWARD' ? primary.endpoints : [])) {
      limit([source], `the plan sends this source to ${d.policy} endpoints (${d.reason}); HCN holds one endpoint set per load balancer, the ${PRIMARY[f.kind]} one`);
      continue;
    }
    // The node's own traffic carries a node address either way; for the others, VFP must do what the plan says.
    if (source !== 'node' && vfpKeepsClientAddress(lb.flags, lb.portFlags, source) === d.masquerade) {
      limit([source], d.masquerade ? `the plan masquerades this source, but the load balancer keeps client addresses (DSR)` : `the plan keeps the client address (${d.reason}); HCN source-NATs it to the SourceVIP unless the load balancer is DSR (winkernel.enableDSR with externalTrafficPolicy Local)`);
    }
  }
  if (lb !== undefined && f.sourceRanges.length > 0) limit(['other', 'local-pod', 'node'], `loadBalancerSourceRanges (${f.sourceRanges.join(', ')}) are not enforced: an HCN load balancer has no source filter (kube-proxy's winkernel ignores them too)`);
  if (lb !== undefined && f.kind === 'NodePort' && !nodePortAddressesAll) limit(SOURCE_CLASSES, 'nodePortAddresses is not honoured: the NodePort load balancer has no FrontendVIPs and serves every address of the host (as in kube-proxy\'s winkernel)');
  if (lb !== undefined && sp.affinityTimeoutSeconds > 0 && f.kind === 'ClusterIP') limit(SOURCE_CLASSES, `ClientIP affinity has no timeout in HCN (DistributionType SourceIP); sessionAffinityConfig's ${sp.affinityTimeoutSeconds} s is not applied`);
  return { lb, unsupported };
}

/** One service port -> its load balancers, the remote endpoints they point at, and what HCN cannot do for it. Pure. */
export function compileServicePort(plan: ServicePortPlan, fs: FamilyState, o: HnsCompileOptions): PortCompile {
  const sp = plan.sp;
  const nodeIP = o.nodeIPs[sp.family] ?? '';
  const overlay = isOverlay(o.network);
  // kube-proxy: on overlay networks an endpoint outside the cluster (no remote subnet) or a node
  // address makes the SourceVIP the node IP; otherwise the configured source VIP.
  // The configured source VIP serves its own family; the other family uses its node IP.
  let sourceVip = o.winkernel.sourceVip !== '' && familyOf(o.winkernel.sourceVip) === sp.family ? o.winkernel.sourceVip : nodeIP;
  if (overlay) {
    for (const ep of sp.endpoints) {
      if (ep.local) continue;
      const pa = providerAddressOf(o.network, ep.ip);
      if (pa === undefined || pa === ep.ip) sourceVip = nodeIP;
    }
  }
  const loadBalancers: LoadBalancerSpec[] = [];
  const unsupported: Unsupported[] = [];
  let nodePortDone = false;
  for (const f of plan.frontends) {
    if (f.kind === 'NodePort') {
      if (nodePortDone) continue;
      nodePortDone = true;
    }
    const r = compileFrontend(plan, f, o, sourceVip, fs.nodePortAddresses.all);
    if (r.lb !== undefined) loadBalancers.push(r.lb);
    unsupported.push(...r.unsupported);
    if (f.kind === 'LoadBalancer' && r.lb !== undefined && o.winkernel.forwardHealthCheckVip) {
      // kube-proxy forwards the health-check port of each LB IP to the host's root endpoint.
      const port = sp.healthCheckNodePort !== 0 ? sp.healthCheckNodePort : o.healthzPort;
      loadBalancers.push({
        slot: `HealthCheck ${f.address}`,
        frontend: 'HealthCheck',
        vip: f.address,
        protocol: PROTOCOL_NUMBER[sp.protocol],
        internalPort: port,
        externalPort: port,
        endpoints: [{ kind: 'name', name: o.winkernel.rootHnsEndpointName }],
        sourceVip,
        flags: sp.family === 6 ? LB_FLAGS.IPv6 : 0,
        portFlags: 0,
        distribution: DISTRIBUTION.None,
      });
    }
  }
  const remote = new Map<string, RemoteEndpointSpec>();
  for (const lb of loadBalancers) {
    for (const ref of lb.endpoints) {
      if (ref.kind !== 'ip' || ref.local || remote.has(ref.ip)) continue;
      const pa = overlay ? (providerAddressOf(o.network, ref.ip) ?? nodeIP) : undefined;
      remote.set(ref.ip, { ip: ref.ip, macAddress: conjureMac('02-11', ref.ip), ...(pa !== undefined ? { providerAddress: pa } : {}) });
    }
  }
  // Overlay: kube-proxy gives each cluster IP a remote endpoint on the host itself.
  if (overlay && loadBalancers.length > 0 && !remote.has(sp.clusterIP)) remote.set(sp.clusterIP, { ip: sp.clusterIP, macAddress: o.hostMac, providerAddress: nodeIP });
  return { key: sp.key, servicePort: sp.servicePortName, loadBalancers, remoteEndpoints: [...remote.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0)), unsupported };
}

/** Every service port of the desired state (what a full sync compiles). */
export function compileHns(state: DesiredState, o: HnsCompileOptions): Map<string, PortCompile> {
  const out = new Map<string, PortCompile>();
  for (const fs of state.families.values()) for (const sp of fs.servicePorts.values()) out.set(sp.key, compileServicePort(planServicePort(sp, fs, state.config), fs, o));
  return out;
}

/** The HostComputeLoadBalancer document for a spec, its endpoints resolved to HCN ids (in the spec's order). */
export function loadBalancerDocument(spec: LoadBalancerSpec, endpointIds: readonly string[]): HostComputeLoadBalancer {
  return {
    HostComputeEndpoints: [...endpointIds],
    ...(spec.sourceVip !== '' ? { SourceVIP: spec.sourceVip } : {}),
    FrontendVIPs: spec.vip === '' ? [] : [spec.vip],
    PortMappings: [{ Protocol: spec.protocol, InternalPort: spec.internalPort, ExternalPort: spec.externalPort, DistributionType: spec.distribution, Flags: spec.portFlags }],
    SchemaVersion: SCHEMA_V2,
    Flags: spec.flags,
  };
}

/** The remote HostComputeEndpoint kube-proxy creates for a pod on another node. */
export function remoteEndpointDocument(spec: RemoteEndpointSpec, networkId: string): HostComputeEndpoint {
  return {
    HostComputeNetwork: networkId,
    IpConfigurations: [{ IpAddress: spec.ip }],
    MacAddress: spec.macAddress,
    Flags: ENDPOINT_FLAGS.RemoteEndpoint,
    ...(spec.providerAddress !== undefined ? { Policies: [{ Type: 'ProviderAddress', Settings: { ProviderAddress: spec.providerAddress } }] } : {}),
    SchemaVersion: SCHEMA_V2,
  };
}

/** kube-proxy's endpoints hash: the XOR of SHA-1 of each upper-cased endpoint id (an unordered set). */
export function hashEndpoints(ids: readonly string[]): string {
  const acc = Buffer.alloc(20);
  for (const id of ids) {
    if (id === '') continue;
    const h = createHash('sha1').update(id.toUpperCase()).digest();
    for (let i = 0; i < 20; i++) acc[i] = acc[i]! ^ h[i]!;
  }
  return acc.toString('hex');
}

/** kube-proxy's loadBalancerIdentifier: protocol, ports, first frontend VIP and the endpoints hash. */
export function loadBalancerIdentifier(lb: HostComputeLoadBalancer): string {
  const pm = lb.PortMappings[0];
  return `${pm?.Protocol ?? 0}/${pm?.InternalPort ?? 0}/${pm?.ExternalPort ?? 0}/${lb.FrontendVIPs?.[0] ?? ''}/${hashEndpoints(lb.HostComputeEndpoints ?? [])}`;
}

/**
 * Where a load balancer listens, unique on a host: IP family, protocol, external port and frontend
 * VIP ("" for NodePorts). The family counts: a dual-stack NodePort has one load balancer per
 * family on the same port, both without VIPs, told apart only by the IPv6 flag.
 */
export function frontendKey(lb: HostComputeLoadBalancer): string {
  const pm = lb.PortMappings[0];
  const family = ((lb.Flags ?? 0) & LB_FLAGS.IPv6) !== 0 ? 6 : 4;
  return `v${family}/${pm?.Protocol ?? 0}/${pm?.ExternalPort ?? 0}/${lb.FrontendVIPs?.[0] ?? ''}`;
}
