// From one validated Service and its EndpointSlices to the service ports of one IP family.
// Pure.
import { categorizeEndpoints } from './categorize.ts';
import { anyContains, familyOf, parseCidr, type Cidr, type Family } from './ip.ts';
import type { ServiceInfo, SliceInfo, ValidPort } from './validate.ts';
import type { DetectLocalMode, EndpointState, LocalDetector, ModelConfig, NodeFacts, NodePortAddresses, ServicePortState } from './types.ts';

export function servicePortName(ns: string, name: string, portName: string): string {
  return `${ns}/${name}${portName === '' ? '' : `:${portName}`}`;
}

export function servicePortKey(ns: string, name: string, portName: string, protocol: string, family: Family): string {
  return `${servicePortName(ns, name, portName)}/${protocol}/v${family}`;
}

/**
 * Endpoints of one service port: from the slices of this family, the port matched by name and
 * protocol. Slices are read in name order; an endpoint listed twice keeps its ready copy.
 */
export function endpointsFor(port: ValidPort, slices: readonly SliceInfo[], family: Family, node: NodeFacts): EndpointState[] {
  const byAddress = new Map<string, EndpointState>();
  const ordered = [...slices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of ordered) {
    if (slice.family !== family) continue;
    const sp = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (sp === undefined) continue;
    for (const e of slice.endpoints) {
      const id = `${e.ip}:${sp.port}`;
      const existing = byAddress.get(id);
      if (existing !== undefined && existing.ready) continue;
      byAddress.set(id, {
        ip: e.ip,
        port: sp.port,
        nodeName: e.nodeName,
        zone: e.zone,
        ready: e.ready,
        serving: e.serving,
        terminating: e.terminating,
        local: node.name !== '' && e.nodeName === node.name,
        zoneHints: e.zoneHints,
        nodeHints: e.nodeHints,
      });
    }
  }
  return [...byAddress.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, ep]) => ep);
}

/** kube-proxy's apiservice.ExternallyAccessible: by type, or a ClusterIP with external IPs. */
function serviceExternallyAccessible(svc: ServiceInfo): boolean {
  return svc.type === 'LoadBalancer' || svc.type === 'NodePort' || (svc.type === 'ClusterIP' && svc.externalIPs.length > 0);
}

export function buildServicePorts(
  svc: ServiceInfo,
  slices: readonly SliceInfo[],
  family: Family,
  node: NodeFacts,
  config: ModelConfig,
): ServicePortState[] {
  const clusterIP = svc.clusterIPs[family];
  if (clusterIP === undefined) return [];
  const externalIPs = svc.externalIPs.filter((ip) => familyOf(ip) === family);
  const loadBalancerIPs = svc.lbIngress.filter((i) => i.vip && familyOf(i.ip) === family).map((i) => i.ip);
  const ranges: Cidr[] = svc.sourceRanges.filter((c) => c.family === family);
  const externalPolicyLocal = svc.externalTrafficPolicyLocal && serviceExternallyAccessible(svc);
  const healthCheckNodePort = svc.type === 'LoadBalancer' && externalPolicyLocal ? svc.healthCheckNodePort : 0;
  const sourceRangesAllowLbIp = ranges.length > 0 && node.addresses[family].some((ip) => anyContains(ranges, ip));
  return svc.ports.map((port) => {
    const endpoints = endpointsFor(port, slices, family, node);
    const externallyAccessible = port.nodePort !== 0 || loadBalancerIPs.length > 0 || externalIPs.length > 0;
    const needs = {
      // Even under eTP Local, externally reachable ports need the cluster endpoints: pod and node
      // traffic to their external addresses short-circuits to them (kube-proxy's UsesClusterEndpoints).
      usesClusterEndpoints: !svc.internalTrafficPolicyLocal || externallyAccessible,
      usesLocalEndpoints: svc.internalTrafficPolicyLocal || (externallyAccessible && externalPolicyLocal),
    };
    const categorized = categorizeEndpoints(endpoints, needs, node.name, node.zone);
    return {
      key: servicePortKey(svc.namespace, svc.name, port.name, port.protocol, family),
      servicePortName: servicePortName(svc.namespace, svc.name, port.name),
      family,
      namespace: svc.namespace,
      name: svc.name,
      portName: port.name,
      protocol: port.protocol,
      clusterIP,
      port: port.port,
      nodePort: port.nodePort,
      externalIPs,
      loadBalancerIPs,
      loadBalancerSourceRanges: ranges.map((c) => c.text),
      sourceRangesAllowLbIp,
      affinityTimeoutSeconds: svc.affinityTimeoutSeconds,
      externalPolicyLocal,
      internalPolicyLocal: svc.internalTrafficPolicyLocal,
      healthCheckNodePort,
      externallyAccessible,
      algorithm: svc.algorithm ?? config.defaultAlgorithm,
      endpoints,
      clusterEndpoints: categorized.clusterEndpoints,
      localEndpoints: categorized.localEndpoints,
      hasAnyEndpoints: categorized.hasAnyEndpoints,
      topologyMode: categorized.topologyMode,
    };
  });
}

export function localDetector(config: ModelConfig, node: NodeFacts, family: Family): LocalDetector {
  const ofFamily = (cidrs: readonly string[]): string[] =>
    cidrs.map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined && c.family === family).map((c) => c.text);
  let mode: DetectLocalMode = config.detectLocalMode;
  let cidrs: string[] = [];
  if (mode === 'ClusterCIDR') cidrs = ofFamily(config.clusterCIDRs);
  if (mode === 'NodeCIDR') cidrs = ofFamily(node.podCIDRs);
  if ((mode === 'ClusterCIDR' || mode === 'NodeCIDR') && cidrs.length === 0) mode = 'None';
  const interfaceName = mode === 'BridgeInterface' ? config.bridgeInterface : mode === 'InterfaceNamePrefix' ? config.interfaceNamePrefix : '';
  if ((mode === 'BridgeInterface' || mode === 'InterfaceNamePrefix') && interfaceName === '') mode = 'None';
  return { mode, cidrs, interfaceName };
}

/** kube-proxy's --nodeport-addresses: empty means all, "primary" means the node IP. */
export function nodePortAddresses(config: ModelConfig, node: NodeFacts, family: Family): NodePortAddresses {
  const spec = config.nodePortAddresses;
  // kube-proxy (iptables NewProxier): localhost NodePorts only for IPv4, and only when
  // nodePortAddresses takes in a loopback address (all of them do when it is empty).
  const localhost = (cidrs: readonly Cidr[] | 'all'): boolean => family === 4 && config.localhostNodePorts !== false && (cidrs === 'all' || anyContains(cidrs, '127.0.0.1'));
  if (spec.length === 0) return { all: true, addresses: node.addresses[family], localhost: localhost('all') };
  if (spec.length === 1 && spec[0] === 'primary') {
    const ip = node.primaryIPs[family];
    return { all: false, addresses: ip === undefined ? [] : [ip], localhost: false };
  }
  const cidrs = spec.map((c) => parseCidr(c)).filter((c): c is Cidr => c !== undefined && c.family === family);
  if (cidrs.some((c) => c.prefix === 0)) return { all: true, addresses: node.addresses[family], localhost: localhost('all') };
  return { all: false, addresses: node.addresses[family].filter((ip) => anyContains(cidrs, ip)), localhost: localhost(cidrs) };
}
