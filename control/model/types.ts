// The desired state: what every backend compiles. One entry per service port and IP family,
// with kube-proxy's semantics already applied (which endpoints serve which traffic).
import type { Family } from './ip.ts';
import type { ServiceCIDRSource } from './service-cidrs.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type TrafficPolicy = 'Cluster' | 'Local';
export type FrontendKind = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalIP';
export type LbAlgorithm = 'random' | 'maglev';

export interface EndpointState {
  ip: string;
  port: number;
  nodeName: string;
  zone: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** On this proxy's node. */
  local: boolean;
  zoneHints: readonly string[];
  nodeHints: readonly string[];
}

export interface ServicePortState {
  /** Unique key: "ns/name:port/PROTO/v4" (port name omitted when empty). */
  key: string;
  /** kube-proxy's ServicePortName.String(): "ns/name:port", or "ns/name" for an unnamed port. */
  servicePortName: string;
  family: Family;
  namespace: string;
  name: string;
  portName: string;
  protocol: Protocol;
  clusterIP: string;
  port: number;
  /** 0 when the service has no NodePort for this port. */
  nodePort: number;
  externalIPs: readonly string[];
  /** Ingress IPs of this family whose ipMode is VIP (ipMode Proxy gets none). */
  loadBalancerIPs: readonly string[];
  /** Canonical CIDRs of this family; empty means no filtering. */
  loadBalancerSourceRanges: readonly string[];
  /** A node IP lies in the source ranges, so traffic from the LB IP itself is allowed too. */
  sourceRangesAllowLbIp: boolean;
  /** 0 when there is no ClientIP affinity. */
  affinityTimeoutSeconds: number;
  externalPolicyLocal: boolean;
  internalPolicyLocal: boolean;
  /** 0 unless externalTrafficPolicy Local on a LoadBalancer. */
  healthCheckNodePort: number;
  /** Has a NodePort, an LB IP or an external IP. */
  externallyAccessible: boolean;
  algorithm: LbAlgorithm;
  /** Every endpoint of this port and family, sorted by ip:port. */
  endpoints: readonly EndpointState[];
  /** Endpoints for traffic under the Cluster policy (topology and terminating fallback applied). */
  clusterEndpoints: readonly EndpointState[];
  /** Endpoints for traffic under the Local policy. */
  localEndpoints: readonly EndpointState[];
  /** Some usable endpoint exists anywhere: without one, traffic is rejected rather than dropped. */
  hasAnyEndpoints: boolean;
  /** Which topology filter chose clusterEndpoints: "", "PreferSameZone" or "PreferSameNode". */
  topologyMode: string;
}

export type DetectLocalMode = 'ClusterCIDR' | 'NodeCIDR' | 'BridgeInterface' | 'InterfaceNamePrefix' | 'None';

/** How a packet's source is recognised as a pod of this node ("local traffic"). */
export interface LocalDetector {
  mode: DetectLocalMode;
  /** ClusterCIDR / NodeCIDR: the CIDRs of this family. */
  cidrs: readonly string[];
  /** BridgeInterface: the bridge; InterfaceNamePrefix: the prefix. */
  interfaceName: string;
}

/** The model's inputs from configuration (kube-proxy's flags, per family where it matters). */
export interface ModelConfig {
  families: readonly Family[];
  clusterCIDRs: readonly string[];
  detectLocalMode: DetectLocalMode;
  bridgeInterface: string;
  interfaceNamePrefix: string;
  /** CIDRs, or ["primary"]; empty means every local address. */
  nodePortAddresses: readonly string[];
  masqueradeAll: boolean;
  /**
   * kube-proxy's iptables.localhostNodePorts (default true): NodePorts also answer on 127.0.0.1,
   * IPv4 only, and only where nodePortAddresses takes in a loopback address.
   */
  localhostNodePorts: boolean;
  /** The fwmark bit of KUBE-MARK-MASQ in the rule-based modes (iptables/nftables masqueradeBit, default 14). */
  masqueradeBit: number;
  /**
   * The cluster's service CIDRs as configured (the API server's --service-cluster-ip-range), used
   * while the API server has no ServiceCIDR objects (service-cidrs.ts): traffic to an address in
   * them that no Service holds is dropped in nftables and eBPF mode (plan.ts). Absent or empty:
   * unknown.
   */
  serviceCIDRs?: readonly string[];
  /** Default for services without the algorithm annotation. */
  defaultAlgorithm: LbAlgorithm;
}

export const DEFAULT_MODEL_CONFIG: ModelConfig = {
  families: [4, 6],
  clusterCIDRs: [],
  detectLocalMode: 'None',
  bridgeInterface: '',
  interfaceNamePrefix: '',
  nodePortAddresses: [],
  masqueradeAll: false,
  localhostNodePorts: true,
  masqueradeBit: 14,
  defaultAlgorithm: 'random',
};

/** What the proxy knows of its own node. */
export interface NodeFacts {
  name: string;
  /** topology.kubernetes.io/zone, "" when unset. */
  zone: string;
  podCIDRs: readonly string[];
  /** Node IPs by family (status addresses and, when given, the host's interface addresses). */
  addresses: Readonly<Record<Family, readonly string[]>>;
  /** The first InternalIP (else ExternalIP) per family: kube-proxy's node IP. */
  primaryIPs: Readonly<Partial<Record<Family, string>>>;
  /** deletionTimestamp is set. */
  deleting: boolean;
  /** Carries the ToBeDeletedByClusterAutoscaler taint. */
  toBeDeleted: boolean;
}

export const UNKNOWN_NODE: NodeFacts = {
  name: '',
  zone: '',
  podCIDRs: [],
  addresses: { 4: [], 6: [] },
  primaryIPs: {},
  deleting: false,
  toBeDeleted: false,
};

/** Where NodePorts listen, per family: every local address, or the listed ones. */
export interface NodePortAddresses {
  all: boolean;
  addresses: readonly string[];
  /**
   * NodePorts answer on the node's loopback (kube-proxy's localhostNodePorts in effect: IPv4, the
   * setting on, and nodePortAddresses empty or holding 127.0.0.1). Absent: false.
   */
  localhost?: boolean;
}

export interface FamilyState {
  family: Family;
  servicePorts: ReadonlyMap<string, ServicePortState>;
  localDetector: LocalDetector;
  nodePortAddresses: NodePortAddresses;
  nodeIPs: readonly string[];
  /** The cluster's service CIDRs of this family (service-cidrs.ts): ClusterIPs come from them. Absent: none known. */
  serviceCIDRs?: readonly string[];
}

export interface DesiredState {
  node: NodeFacts;
  config: ModelConfig;
  families: ReadonlyMap<Family, FamilyState>;
  /** Where the families' serviceCIDRs come from (absent: none known). */
  serviceCIDRSource?: ServiceCIDRSource;
}

/** Per-object changes since the last flush, per service port key. */
export interface ChangeSet {
  upserted: ServicePortState[];
  removed: ServicePortState[];
  /** Node facts changed (backends may need to recompute NodePort addresses etc.). */
  nodeChanged: boolean;
  /** Services and endpoints changes counted as kube-proxy counts them (objects, not ports). */
  serviceChanges: number;
  endpointChanges: number;
  /**
   * The endpoints.kubernetes.io/last-change-trigger-time of every EndpointSlice update in this
   * change set (epoch ms): kube-proxy's network programming latency is measured from them once
   * the sync that carries them has succeeded. Deletions carry none, as in kube-proxy.
   */
  lastChangeTriggerTimes: number[];
  /** The same trigger times with the service ("ns/name") whose slice carried each. */
  lastChangeTriggers?: Array<{ service: string; time: number }>;
  /** The service CIDRs in effect changed (the table's frame, not any service port). */
  serviceCIDRsChanged?: boolean;
}
